import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsPlugin from 'ajv-formats';
import type { NormalisedEvent, ValidationIssue } from './event.schema.ts';
import { EVENT_LIMITS } from './limits.ts';

/**
 * Tracking plans (ARCHITECTURE §14), without I/O: a JSON Schema (2020-12) per
 * (service, type), compiled once per version with Ajv, and the verdict on one event. The
 * schema applies to a native event's `metadata`, to a Segment call's `properties` (track,
 * page, screen) or `traits` (identify, group); alias calls carry neither and are not checked.
 */

export const PLAN_MODES = ['off', 'warn', 'reject'] as const;
export type PlanMode = (typeof PLAN_MODES)[number];
export const UNKNOWN_TYPE_RULES = ['allow', 'warn', 'reject'] as const;
export type UnknownTypeRule = (typeof UNKNOWN_TYPE_RULES)[number];

/** A service's settings: `mode` for its registered types, `unknownTypes` for the others. */
export interface PlanSettings {
  mode: PlanMode;
  unknownTypes: UnknownTypeRule;
}

/** What a service with no settings of its own gets: schemas flag, unregistered types pass. */
export const DEFAULT_PLAN_SETTINGS: PlanSettings = { mode: 'warn', unknownTypes: 'allow' };

/** The `type` label of violations of a type with no schema: the metric's cardinality stays bounded. */
export const UNREGISTERED_TYPE = '(unregistered)';

export type SchemaCompilation =
  | { ok: true; validate: ValidateFunction }
  | { ok: false; message: string; details: ValidationIssue[] };

const addFormats = addFormatsPlugin as unknown as (ajv: Ajv2020) => void;

/** What the `u` flag would change in a pattern: property escapes, code point escapes, anything not ASCII. */
const NEEDS_UNICODE = /\\[pP]\{|\\u\{|[\u0080-\uffff]/;

/**
 * The RegExp of a schema's `pattern`. A pattern the client's data runs against must not be
 * able to hold the process (`^(a+)+$` on forty `a`s and a `!` takes minutes to backtrack):
 * main.ts lets V8 fall back to its linear-time engine on excessive backtracking, which it
 * does only for expressions without the `u` flag. So a pattern that means the same without
 * it (ASCII, no `\p{…}` or `\u{…}`) is compiled without it; any other keeps `u`.
 */
export const linearFallbackRegExp = Object.assign(
  (pattern: string, flags: string): RegExp =>
    new RegExp(pattern, NEEDS_UNICODE.test(pattern) ? flags : flags.replace('u', '')),
  { code: 'linearFallbackRegExp' },
);

/**
 * Compiles a plan's schema, or says why it cannot be: not an object, not a valid 2020-12
 * schema, an unknown keyword or format (a typo like `requried` would otherwise check
 * nothing), a `$ref` that does not resolve (nothing is fetched). Each schema gets an Ajv
 * instance of its own, so two services' `$id`s never collide. Called when a schema is
 * written and when a process loads it, never for an event.
 */
export function compilePlanSchema(schema: unknown): SchemaCompilation {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
    return refusal('a schema must be a JSON object', [
      { path: 'schema', code: 'invalid_type', message: 'must be a JSON object' },
    ]);
  }
  const ajv = new Ajv2020({
    allErrors: true,
    strictSchema: true,
    strictNumbers: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    validateFormats: true,
    code: { regExp: linearFallbackRegExp },
    // The failing paths are what a client needs; the schema fragment would be noise.
    verbose: false,
    messages: true,
  });
  addFormats(ajv);
  if (!ajv.validateSchema(schema)) {
    const errors = ajv.errors ?? [];
    return refusal(
      `not a valid JSON Schema 2020-12: ${ajv.errorsText(errors, { dataVar: 'schema' })}`,
      schemaIssues(errors),
    );
  }
  try {
    return { ok: true, validate: ajv.compile(schema) };
  } catch (err) {
    const message = (err as Error).message;
    return refusal(`the schema cannot be compiled: ${message}`, [
      { path: 'schema', code: 'invalid_schema', message },
    ]);
  }
}

function refusal(message: string, details: ValidationIssue[]): SchemaCompilation {
  return { ok: false, message, details: details.slice(0, EVENT_LIMITS.maxIssues) };
}

/** Meta-schema errors of a schema, with paths into the request body (`schema.properties.a.type`). */
function schemaIssues(errors: readonly ErrorObject[]): ValidationIssue[] {
  return errors.map((e) => ({
    path: joinPath('schema', e.instancePath),
    code: 'invalid_schema',
    message: e.message ?? `fails ${e.keyword}`,
  }));
}

/** JSON Pointer (`/a/b~1c`) after `root`, dotted (`root.a.b/c`). */
function joinPath(root: string, pointer: string): string {
  if (pointer === '') return root;
  const parts = pointer
    .slice(1)
    .split('/')
    .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'));
  return root === '' ? parts.join('.') : `${root}.${parts.join('.')}`;
}

/** JSON Schema keywords whose failure the API names with its own codes; any other keyword is its own code. */
const CODES: Record<string, string> = {
  required: 'required',
  dependentRequired: 'required',
  additionalProperties: 'unknown_field',
  unevaluatedProperties: 'unknown_field',
  type: 'invalid_type',
  enum: 'invalid_value',
  const: 'invalid_value',
  format: 'invalid_format',
  pattern: 'invalid_format',
  minimum: 'out_of_range',
  maximum: 'out_of_range',
  exclusiveMinimum: 'out_of_range',
  exclusiveMaximum: 'out_of_range',
  multipleOf: 'out_of_range',
  minLength: 'invalid_length',
  maxLength: 'invalid_length',
  minItems: 'invalid_length',
  maxItems: 'invalid_length',
  minProperties: 'invalid_length',
  maxProperties: 'invalid_length',
};

/** Errors that only restate their sub-schemas' (which are listed too) or that name nothing to fix. */
const RESTATING = new Set(['if', 'anyOf', 'oneOf', 'allOf', 'not', 'contains', 'propertyNames']);

/** The property a keyword's error is about, below the object it was raised on. */
function propertyOf(e: ErrorObject): string | undefined {
  const p = e.params as Record<string, unknown>;
  const name = p.missingProperty ?? p.additionalProperty ?? p.unevaluatedProperty;
  return typeof name === 'string' ? name : undefined;
}

/**
 * Ajv's errors for the checked object as the API's `details`: one `{path, code, message}`
 * per failure, the path dotted below `root` and ending at the property at fault (a missing
 * or unexpected one too), at most EVENT_LIMITS.maxIssues of them, each path and code once.
 * Messages come from the schema's keywords (`must be >= 0`, allowed values of an enum),
 * never from the event's values, so they can be stored and logged.
 */
export function planIssues(errors: readonly ErrorObject[], root: string): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  const seen = new Set<string>();
  const keep = (issue: ValidationIssue) => {
    const key = `${issue.path}\u0000${issue.code}`;
    if (seen.has(key) || out.length >= EVENT_LIMITS.maxIssues) return;
    seen.add(key);
    out.push(issue);
  };
  for (const e of errors) {
    if (RESTATING.has(e.keyword)) continue;
    const at = joinPath(root, e.instancePath);
    const property = propertyOf(e);
    const path = property === undefined ? at : at === '' ? property : `${at}.${property}`;
    keep({ path, code: CODES[e.keyword] ?? e.keyword, message: messageOf(e, property) });
  }
  // Only restating errors (a `not` at the top, say): say so rather than nothing.
  if (out.length === 0 && errors.length > 0) {
    const first = errors[0] as ErrorObject;
    keep({ path: joinPath(root, first.instancePath), code: first.keyword, message: first.message ?? '' });
  }
  return out;
}

function messageOf(e: ErrorObject, property: string | undefined): string {
  if (e.keyword === 'required' || e.keyword === 'dependentRequired') return 'required by the tracking plan';
  if (property !== undefined) return 'not in the tracking plan';
  if (e.keyword === 'enum') {
    const allowed = (e.params as { allowedValues?: unknown[] }).allowedValues ?? [];
    return `must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`.slice(0, 500);
  }
  return e.message ?? `fails ${e.keyword}`;
}

/** One registered type's compiled schema. */
export interface CompiledPlan {
  version: number;
  validate: ValidateFunction;
}

/** A service's plan: settings and compiled schemas by type (null: registered, but its schema does not compile). */
export interface ServicePlan {
  settings: PlanSettings;
  types: ReadonlyMap<string, CompiledPlan | null>;
}

/** An event that fails its plan, or whose type has none under `unknownTypes` warn or reject. */
export interface PlanVerdict {
  action: 'warn' | 'reject';
  code: 'schema_violation' | 'unknown_event_type';
  message: string;
  details: ValidationIssue[];
  service: string;
  /** The metric's `type` label: the event's type when registered, else {@link UNREGISTERED_TYPE}. */
  label: string;
}

/** What a Segment call type's schema checks. */
const SEGMENT_TARGETS: Record<string, 'properties' | 'traits' | undefined> = {
  track: 'properties',
  page: 'properties',
  screen: 'properties',
  identify: 'traits',
  group: 'traits',
};

/** The object a plan checks in `event` and its path as the client sent it; undefined: nothing to check. */
function target(event: NormalisedEvent, segment: boolean): { value: unknown; root: string } | undefined {
  if (!segment) return { value: event.metadata ?? {}, root: 'metadata' };
  const field = SEGMENT_TARGETS[String(event.metadata?.segmentType)];
  if (field === undefined) return undefined;
  return { value: event.metadata?.[field] ?? {}, root: field };
}

/**
 * Every service's plan as one process holds it: built whole by the registry on each load and
 * swapped in, so a check never sees half of a change.
 */
export class PlanBook {
  readonly #services: ReadonlyMap<string, ServicePlan>;

  constructor(services: ReadonlyMap<string, ServicePlan> = new Map()) {
    this.#services = services;
  }

  get size(): number {
    return this.#services.size;
  }

  plan(service: string): ServicePlan | undefined {
    return this.#services.get(service);
  }

  /**
   * The verdict on one valid event: undefined when it passes or is not checked (no plan for
   * its service, `mode: off` for a registered type, `unknownTypes: allow` for another).
   * `segment`: it came as a Segment call (its `metadata` holds the call's fields).
   */
  check(event: NormalisedEvent, segment: boolean): PlanVerdict | undefined {
    const plan = this.#services.get(event.service);
    if (plan === undefined) return undefined;
    const checked = target(event, segment);
    if (checked === undefined) return undefined;
    const compiled = plan.types.get(event.type);
    if (compiled === undefined) {
      const rule = plan.settings.unknownTypes;
      if (rule === 'allow') return undefined;
      return {
        action: rule,
        code: 'unknown_event_type',
        message: `service "${event.service}" has no schema for type "${event.type}"`,
        details: [{ path: 'type', code: 'unknown_event_type', message: 'not in the tracking plan' }],
        service: event.service,
        label: UNREGISTERED_TYPE,
      };
    }
    const { mode } = plan.settings;
    if (mode === 'off' || compiled === null || compiled.validate(checked.value)) return undefined;
    return {
      action: mode,
      code: 'schema_violation',
      message: `the event does not match version ${compiled.version} of the schema for "${event.type}"`,
      details: planIssues(compiled.validate.errors ?? [], checked.root),
      service: event.service,
      label: event.type,
    };
  }
}
