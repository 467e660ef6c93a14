import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  K8S_DIR,
  type K8sObject,
  KUSTOMIZATION,
  loadManifests,
  type Manifest,
  manifestFiles,
  ruleProblems,
  schemaProblems,
  unknownFieldProblems,
  validateManifests,
} from '../helpers/k8s-manifests.ts';

const manifests = loadManifests();
const find = (kind: string, name: string): Manifest => {
  const m = manifests.find(
    (x) => x.object.kind === kind && (x.object.metadata as { name?: string })?.name === name,
  );
  if (!m) throw new Error(`no ${kind} ${name} in ops/k8s`);
  return m;
};

/** A deep copy of one manifest with `change` applied, under a name saying what was broken. */
function broken(kind: string, name: string, what: string, change: (o: K8sObject) => void): Manifest {
  const object = structuredClone(find(kind, name).object);
  change(object);
  return { where: what, object };
}

// biome-ignore lint/suspicious/noExplicitAny: the mutations below reach deep into parsed YAML
type Any = any;
const apiContainer = (o: Any) => o.spec.template.spec.containers[0];

/** A pgBackRest configuration file: section → option → value (comments and blank lines dropped). */
function ini(text: string): Record<string, Record<string, string>> {
  const sections: Record<string, Record<string, string>> = {};
  let section: Record<string, string> = {};
  for (const line of text.split('\n').map((l) => l.trim())) {
    const header = /^\[(.+)\]$/.exec(line);
    if (header?.[1]) sections[header[1]] = section = {};
    else if (line && !line.startsWith('#')) {
      const at = line.indexOf('=');
      section[line.slice(0, at)] = line.slice(at + 1);
    }
  }
  return sections;
}

describe('Kubernetes manifests (ops/k8s), validated without a cluster', () => {
  it('are valid against the Kubernetes and KEDA schemas, have no unknown field, and hold together', async () => {
    expect(await validateManifests(manifests)).toEqual([]);
    const kinds = manifests.map(
      (m) => `${String(m.object.kind)}/${(m.object.metadata as { name: string }).name}`,
    );
    expect(kinds).toEqual(
      expect.arrayContaining([
        'Deployment/tributary-api',
        'Deployment/tributary-worker',
        'Service/tributary-api',
        'HorizontalPodAutoscaler/tributary-api',
        'ScaledObject/tributary-worker',
        'PodDisruptionBudget/tributary-api',
        'PodDisruptionBudget/tributary-worker',
        'Job/tributary-migrate',
        'ConfigMap/tributary-config',
        'Secret/tributary-secrets',
        'CronJob/tributary-backup',
        'PersistentVolumeClaim/tributary-pgbackrest-repo',
        'ConfigMap/tributary-pgbackrest',
      ]),
    );
  });

  it('kustomization.yaml lists every manifest file', () => {
    const kustomization = parse(readFileSync(join(K8S_DIR, KUSTOMIZATION), 'utf8')) as {
      resources: string[];
    };
    expect([...kustomization.resources].sort()).toEqual(manifestFiles());
  });

  it('the probes, ports and settings match what the service serves', () => {
    const api = apiContainer(find('Deployment', 'tributary-api').object);
    const worker = apiContainer(find('Deployment', 'tributary-worker').object);
    const env = (c: Any) => Object.fromEntries(c.env.map((e: Any) => [e.name, e.value]));
    expect(api.readinessProbe.httpGet.path).toBe('/health/ready');
    expect(api.livenessProbe.httpGet.path).toBe('/health/live');
    expect(worker.livenessProbe.httpGet.path).toBe('/health/live');
    expect(env(api)).toMatchObject({ PORT: '8080', ADMIN_PORT: '9464' });
    expect(env(worker)).toMatchObject({ METRICS_PORT: '9464' });
    const trigger = (find('ScaledObject', 'tributary-worker').object as Any).spec.triggers[0];
    expect(trigger.metadata.query).toContain('tributary_workers_recommended');
    const secret = (find('Secret', 'tributary-secrets').object as Any).stringData;
    expect(Object.keys(secret)).toEqual(expect.arrayContaining(['DATABASE_URL', 'DATABASE_MIGRATION_URL']));
  });

  it('the backup CronJob never overlaps itself and uses its repository, configuration and certificates', () => {
    const cron = find('CronJob', 'tributary-backup').object as Any;
    expect(cron.spec.concurrencyPolicy).toBe('Forbid');
    const pod = cron.spec.jobTemplate.spec.template.spec;
    const volume = (name: string) => pod.volumes.find((v: Any) => v.name === name);
    const mountOf = (name: string) =>
      pod.containers[0].volumeMounts.find((m: Any) => m.name === name)?.mountPath;
    const claim = find('PersistentVolumeClaim', volume('repo').persistentVolumeClaim.claimName).object as Any;
    expect(claim.spec.accessModes).toEqual(['ReadWriteMany']);
    expect(volume('config').configMap.name).toBe('tributary-pgbackrest');
    expect(mountOf('config')).toBe('/etc/pgbackrest');

    const confs = (find('ConfigMap', 'tributary-pgbackrest').object as Any).data;
    const repoHost = ini(confs['pgbackrest.conf']);
    const database = ini(confs['database.conf']);
    expect(repoHost.global?.['repo1-path']).toBe(mountOf('repo'));
    expect(database.global?.['repo1-path']).toBe(mountOf('repo'));
    // The repository host reaches the database's pgbackrest server over TLS, with the Secret's files.
    const stanza = repoHost.tributary ?? {};
    expect(stanza['pg1-host-type']).toBe('tls');
    expect(stanza['pg1-host-port']).toBe(database.global?.['tls-server-port']);
    expect(volume('tls').secret.secretName).toBe('tributary-pgbackrest-tls');
    for (const file of ['pg1-host-ca-file', 'pg1-host-cert-file', 'pg1-host-key-file']) {
      expect(stanza[file]).toMatch(new RegExp(`^${mountOf('tls')}/`));
    }
    expect(stanza['pg1-path']).toBe(database.tributary?.['pg1-path']);
    expect(database.global?.['tls-server-auth']).toMatch(/=tributary$/);
    // The same backup settings as the compose stack's ops/pgbackrest/pgbackrest.conf.
    const compose = ini(readFileSync(join(K8S_DIR, '../pgbackrest/pgbackrest.conf'), 'utf8'));
    for (const key of ['repo1-retention-full', 'compress-type', 'start-fast', 'process-max']) {
      expect(repoHost.global?.[key], key).toBe(compose.global?.[key]);
    }
  });

  it('refuses a manifest that breaks a schema, has an unknown field, or breaks a rule', async () => {
    const schemaBroken = [
      broken('Deployment', 'tributary-api', 'containerPort as a name', (o: Any) => {
        apiContainer(o).ports[0].containerPort = 'http';
      }),
      broken('Deployment', 'tributary-api', 'bad quantity', (o: Any) => {
        apiContainer(o).resources.limits.memory = 'lots';
      }),
      broken('ScaledObject', 'tributary-worker', 'trigger without type', (o: Any) => {
        delete o.spec.triggers[0].type;
      }),
      { where: 'kind with no schema', object: { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress' } },
    ];
    const schema = await schemaProblems(schemaBroken);
    for (const what of [
      'containerPort as a name',
      'bad quantity',
      'trigger without type',
      'kind with no schema',
    ]) {
      expect(
        schema.some((p) => p.where === what),
        `${what}: ${JSON.stringify(schema)}`,
      ).toBe(true);
    }
    expect(schema.find((p) => p.where === 'trigger without type')?.message).toMatch(
      /required property '?type'?/,
    );

    const misspelt = [
      broken('Deployment', 'tributary-worker', 'livenesProbe', (o: Any) => {
        const c = apiContainer(o);
        c.livenesProbe = c.livenessProbe;
        delete c.livenessProbe;
      }),
      broken('ScaledObject', 'tributary-worker', 'minReplicas', (o: Any) => {
        o.spec.minReplicas = o.spec.minReplicaCount;
      }),
    ];
    // The schemas let both through; the type check names the field.
    expect(await schemaProblems(misspelt)).toEqual([]);
    const unknown = unknownFieldProblems(misspelt);
    expect(unknown.find((p) => p.where === 'livenesProbe')?.message).toMatch(
      /'"?livenesProbe"?' does not exist/,
    );
    expect(unknown.find((p) => p.where === 'minReplicas')?.message).toMatch(
      /'"?minReplicas"?' does not exist/,
    );

    const nameOf = (m: Manifest) => (m.object.metadata as { name: string }).name;
    /** The real set with the broken manifest in place of its original. */
    const replace = (m: Manifest) =>
      manifests.map((x) => (x.where === find(String(m.object.kind), nameOf(m)).where ? m : x));
    const rules: [Manifest, RegExp][] = [
      [
        broken('Service', 'tributary-api', 'service selects nothing', (o: Any) => {
          o.spec.selector['app.kubernetes.io/component'] = 'apii';
        }),
        /selects no Deployment/,
      ],
      [
        broken('Deployment', 'tributary-api', 'runs as root', (o: Any) => {
          o.spec.template.spec.securityContext.runAsNonRoot = false;
        }),
        /runAsNonRoot must be true/,
      ],
      [
        broken('Deployment', 'tributary-worker', 'no memory limit', (o: Any) => {
          delete apiContainer(o).resources.limits.memory;
        }),
        /limits\.memory is missing/,
      ],
      [
        broken('Deployment', 'tributary-api', 'probe on a port not declared', (o: Any) => {
          apiContainer(o).readinessProbe.httpGet.port = 'metrics';
        }),
        /readinessProbe port metrics is not a container port/,
      ],
      [
        broken('ScaledObject', 'tributary-worker', 'scales the API too', (o: Any) => {
          o.spec.scaleTargetRef.name = 'tributary-api';
        }),
        /second autoscaler/,
      ],
    ];
    for (const [manifest, expected] of rules) {
      const found = ruleProblems(replace(manifest)).filter((p) => p.where === manifest.where);
      expect(found.map((p) => p.message).join('; '), manifest.where).toMatch(expected);
    }
  });
});
