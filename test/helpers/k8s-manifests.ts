import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';

/**
 * Validation of the Kubernetes manifests in ops/k8s without a cluster or kubectl:
 *
 * 1. schemas: each object against its OpenAPI schema, with the ajv validators that
 *    `kubernetes-models` ships (generated from Kubernetes' OpenAPI) and, for the KEDA
 *    ScaledObject, `@kubernetes-models/keda` (generated from KEDA's CRDs);
 * 2. no unknown field (as `kubeconform -strict`): the schemas allow any extra property, so each
 *    object is also type-checked by the TypeScript compiler against the same packages' type
 *    declarations, whose excess-property check names a misspelt field;
 * 3. what the schemas cannot say: references that must resolve (selectors, Services' target
 *    ports, probes' ports, scale targets, ConfigMaps, Secrets, claims, service accounts), and
 *    the house rules (non-root, no privilege escalation, read-only root, resources, probes).
 */

export type K8sObject = Record<string, unknown> & { apiVersion?: unknown; kind?: unknown };

export interface Manifest {
  /** File name and document index, e.g. `api.yaml#2`. */
  where: string;
  object: K8sObject;
}

export interface Problem {
  where: string;
  message: string;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const K8S_DIR = join(ROOT, 'ops/k8s');
/** Not a Kubernetes object: kustomize's own file, checked for listing every manifest instead. */
export const KUSTOMIZATION = 'kustomization.yaml';

/** apiVersion/kind → the module whose class validates it and whose `I<kind>` types it. */
const MODELS: Record<string, string> = {
  'v1/Namespace': 'kubernetes-models/v1/Namespace',
  'v1/ServiceAccount': 'kubernetes-models/v1/ServiceAccount',
  'v1/ConfigMap': 'kubernetes-models/v1/ConfigMap',
  'v1/Secret': 'kubernetes-models/v1/Secret',
  'v1/Service': 'kubernetes-models/v1/Service',
  'v1/PersistentVolumeClaim': 'kubernetes-models/v1/PersistentVolumeClaim',
  'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment',
  'batch/v1/Job': 'kubernetes-models/batch/v1/Job',
  'batch/v1/CronJob': 'kubernetes-models/batch/v1/CronJob',
  'autoscaling/v2/HorizontalPodAutoscaler': 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
  'policy/v1/PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget',
  'keda.sh/v1alpha1/ScaledObject': '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject',
};

const typeKey = (o: K8sObject) => `${String(o.apiVersion)}/${String(o.kind)}`;

/** Every document of every manifest file in `dir` but the kustomization. */
export function loadManifests(dir = K8S_DIR): Manifest[] {
  const out: Manifest[] = [];
  for (const file of manifestFiles(dir)) {
    parseAllDocuments(readFileSync(join(dir, file), 'utf8')).forEach((doc, i) => {
      if (doc.errors.length > 0) throw new Error(`${file}#${i}: ${doc.errors[0]?.message}`);
      const object = doc.toJS() as K8sObject | null;
      if (object) out.push({ where: `${file}#${i}`, object });
    });
  }
  return out;
}

export function manifestFiles(dir = K8S_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f) && f !== KUSTOMIZATION)
    .sort();
}

/** Every problem of the set: schemas, unknown fields, references and house rules. */
export async function validateManifests(manifests: readonly Manifest[]): Promise<Problem[]> {
  return [
    ...(await schemaProblems(manifests)),
    ...unknownFieldProblems(manifests),
    ...ruleProblems(manifests),
  ];
}

/** 1. Each object against its JSON schema; a kind with no schema here is a problem too. */
export async function schemaProblems(manifests: readonly Manifest[]): Promise<Problem[]> {
  const problems: Problem[] = [];
  for (const { where, object } of manifests) {
    const module = MODELS[typeKey(object)];
    if (!module) {
      problems.push({ where, message: `no schema for ${typeKey(object)}: add it to MODELS` });
      continue;
    }
    const exports = (await import(module)) as Record<string, new (data: unknown) => { validate(): void }>;
    const Model = exports[String(object.kind)];
    try {
      if (!Model) throw new Error(`${module} exports no ${String(object.kind)}`);
      new Model(object).validate();
    } catch (err) {
      problems.push({ where, message: (err as Error).message });
    }
  }
  return problems;
}

/** 2. Each object as a literal of its type: the compiler names any field the type does not have. */
export function unknownFieldProblems(manifests: readonly Manifest[]): Problem[] {
  const known = manifests.filter((m) => MODELS[typeKey(m.object)]);
  const file = join(K8S_DIR, '__manifests_typecheck.ts');
  const lines = known.map(({ object }, i) => {
    const module = MODELS[typeKey(object)] as string;
    return `import type { I${String(object.kind)} as T${i} } from '${module}'; export const m${i}: T${i} = ${JSON.stringify(object)};`;
  });
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (name, language, ...rest) =>
    name === file
      ? ts.createSourceFile(name, lines.join('\n'), language)
      : getSourceFile(name, language, ...rest);
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram({ rootNames: [file], options, host });
  return ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    return {
      where: known[line]?.where ?? 'typecheck',
      message: ts.flattenDiagnosticMessageText(d.messageText, ' '),
    };
  });
}

// ---------------------------------------------------------------- 3. references and house rules

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const list = (v: unknown): Obj[] => (Array.isArray(v) ? v.map(obj) : []);
const nameOf = (o: Obj) => String(obj(o.metadata).name ?? '');

/** The pod template of a workload, or undefined for other kinds. */
function podTemplate(o: K8sObject): Obj | undefined {
  if (o.kind === 'Deployment' || o.kind === 'Job') return obj(obj(o.spec).template);
  if (o.kind === 'CronJob') return obj(obj(obj(obj(o.spec).jobTemplate).spec).template);
  return undefined;
}

const matches = (selector: Obj, labels: Obj) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The rules each workload's pods follow, and references between objects. */
export function ruleProblems(manifests: readonly Manifest[]): Problem[] {
  const problems: Problem[] = [];
  const names = (kind: string) =>
    new Set(manifests.filter((m) => m.object.kind === kind).map((m) => nameOf(m.object)));
  const deployments = manifests.filter((m) => m.object.kind === 'Deployment');
  const podLabels = (m: Manifest) => obj(obj(podTemplate(m.object)?.metadata).labels);
  const selected = (selector: Obj) => deployments.filter((d) => matches(selector, podLabels(d)));
  const containersOf = (m: Manifest) => list(obj(podTemplate(m.object)?.spec).containers);

  for (const m of manifests) {
    const { where, object } = m;
    const problem = (message: string) => problems.push({ where, message });
    if (!nameOf(object)) problem('metadata.name is missing');
    const template = podTemplate(object);
    if (template) podRules(m, template, names, problem);
    const spec = obj(object.spec);
    if (object.kind === 'Deployment' && !matches(obj(obj(spec.selector).matchLabels), podLabels(m))) {
      problem('spec.selector.matchLabels does not match the pod template labels');
    }
    if (object.kind === 'Service') {
      const targets = selected(obj(spec.selector));
      if (targets.length === 0) problem('spec.selector selects no Deployment');
      if (targets.some((d) => containersOf(d).some((c) => c.readinessProbe === undefined))) {
        problem('a pod it selects has no readinessProbe, so it would get traffic before it is ready');
      }
      for (const port of list(spec.ports)) {
        const target = port.targetPort;
        const found = targets.every((d) =>
          containersOf(d).some((c) =>
            list(c.ports).some((p) => p.name === target || p.containerPort === target),
          ),
        );
        if (target !== undefined && !found)
          problem(`targetPort ${String(target)} is no port of the selected pods`);
      }
    }
    if (object.kind === 'PodDisruptionBudget' && selected(obj(obj(spec.selector).matchLabels)).length === 0) {
      problem('spec.selector selects no Deployment');
    }
    if (object.kind === 'HorizontalPodAutoscaler' || object.kind === 'ScaledObject') {
      const target = String(obj(spec.scaleTargetRef).name);
      const deployment = deployments.find((d) => nameOf(d.object) === target);
      if (!deployment) problem(`scaleTargetRef ${target} is no Deployment here`);
      const others = manifests.filter(
        (o) =>
          o !== m &&
          (o.object.kind === 'HorizontalPodAutoscaler' || o.object.kind === 'ScaledObject') &&
          obj(obj(o.object.spec).scaleTargetRef).name === target,
      );
      if (others.length > 0) problem(`${target} has a second autoscaler (${others[0]?.where})`);
    }
  }
  return problems;
}

function podRules(
  m: Manifest,
  template: Obj,
  names: (kind: string) => Set<string>,
  problem: (message: string) => void,
): void {
  const pod = obj(template.spec);
  const security = obj(pod.securityContext);
  if (security.runAsNonRoot !== true) problem('pod securityContext.runAsNonRoot must be true');
  if (obj(security.seccompProfile).type !== 'RuntimeDefault')
    problem('pod seccompProfile must be RuntimeDefault');
  if (pod.serviceAccountName !== undefined && !names('ServiceAccount').has(String(pod.serviceAccountName))) {
    problem(`serviceAccountName ${String(pod.serviceAccountName)} is not defined here`);
  }
  for (const v of list(pod.volumes)) {
    const claim = obj(v.persistentVolumeClaim).claimName;
    if (claim !== undefined && !names('PersistentVolumeClaim').has(String(claim))) {
      problem(`volume ${String(v.name)}: claim ${String(claim)} is not defined here`);
    }
  }
  const volumes = new Set(list(pod.volumes).map((v) => v.name));
  for (const c of list(pod.containers)) {
    const at = `container ${String(c.name)}`;
    const cs = obj(c.securityContext);
    if (cs.allowPrivilegeEscalation !== false) problem(`${at}: allowPrivilegeEscalation must be false`);
    if (cs.readOnlyRootFilesystem !== true) problem(`${at}: readOnlyRootFilesystem must be true`);
    if (!(obj(cs.capabilities).drop as unknown[] | undefined)?.includes('ALL')) {
      problem(`${at}: capabilities.drop must include ALL`);
    }
    const resources = obj(c.resources);
    for (const [part, key] of [
      ['requests', 'cpu'],
      ['requests', 'memory'],
      ['limits', 'memory'],
    ] as const) {
      if (obj(resources[part])[key] === undefined) problem(`${at}: resources.${part}.${key} is missing`);
    }
    for (const from of list(c.envFrom)) {
      const cm = obj(from.configMapRef).name;
      const secret = obj(from.secretRef).name;
      if (cm !== undefined && !names('ConfigMap').has(String(cm)))
        problem(`${at}: ConfigMap ${String(cm)} missing`);
      if (secret !== undefined && !names('Secret').has(String(secret)))
        problem(`${at}: Secret ${String(secret)} missing`);
    }
    for (const mount of list(c.volumeMounts)) {
      if (!volumes.has(mount.name)) problem(`${at}: volumeMount ${String(mount.name)} has no volume`);
    }
    const ports = list(c.ports);
    const probes = ['livenessProbe', 'readinessProbe', 'startupProbe'] as const;
    for (const probe of probes) {
      const port = obj(obj(c[probe]).httpGet).port;
      if (port !== undefined && !ports.some((p) => p.name === port || p.containerPort === port)) {
        problem(`${at}: ${probe} port ${String(port)} is not a container port`);
      }
    }
    if (m.object.kind === 'Deployment' && c.livenessProbe === undefined) problem(`${at}: no livenessProbe`);
  }
}
