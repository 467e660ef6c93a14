import type { BufferMonitor } from '../buffer/monitor.ts';
import type { BufferedEvent, EnqueueOutcome, EventProducer } from '../buffer/producer.ts';
import type { MetadataCipher } from '../compliance/metadata-cipher.ts';
import type { SubjectRegistry } from '../compliance/subjects.ts';
import type { Config } from '../config.ts';
import { maxRetentionDays } from '../config.ts';
import { type NormalisedEvent, parseEvent, type ValidationContext } from '../events/event.schema.ts';
import type { PlanVerdict } from '../events/plans.ts';
import { SEGMENT_LIMITS } from '../events/segment.ts';
import type { LiveRequest } from '../live/outcomes.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { childSpan, currentTraceparent, inSpan, SpanKind } from '../telemetry/tracing.ts';
import { type DryRunOutcome, dryRunOutcome } from './dry-run.ts';
import { ApiError, errors, withBuffer } from './errors.ts';
import { mayUseService, type Principal } from './key-resolver.ts';
import type { PlanSource } from './plan-registry.ts';

// What every ingest route does once it holds event inputs: validate, check the key's
// services and opt-outs, seal, refuse when the buffer is full, buffer, count. The native
// routes (`routes/events.ts`) and the Segment ones (`routes/segment.ts`) differ only in
// how they read a body into inputs.

export interface IngestDeps {
  config: Pick<Config, 'RETENTION_DAYS' | 'RETENTION_BY_SERVICE'>;
  /** Opted-out subjects: their events are answered `skipped` and never buffered. */
  subjects?: SubjectRegistry | undefined;
  /** Encrypts the configured metadata keys before buffering. */
  cipher?: MetadataCipher | undefined;
  producer: EventProducer;
  monitor: BufferMonitor;
  metrics: Metrics;
  /** Tracking plans (§14); absent, no event is checked against one. */
  plans?: PlanSource | undefined;
}

/** One event of a batch refused on its own. */
export interface Rejection {
  index: number;
  code: string;
  message: string;
  details?: { path: string; code: string; message: string }[];
}

/** What a batch request answers (the `BatchResult` schema). */
export interface BatchOutcome {
  accepted: number;
  duplicates: number;
  skipped: number;
  ids: string[];
  rejected: Rejection[];
  /** Events stored although they fail their tracking plan (`warn`, §14); absent when none. */
  warnings?: Rejection[];
}

export type SingleOutcome =
  | { id: string; status: EnqueueOutcome; warnings?: Rejection[] }
  | { id: string; status: 'skipped'; reason: 'user_opt_out' };

/** The Segment routes' events: a size limit of their own, and plans check the call's properties or traits. */
export interface IngestFormat {
  segment: boolean;
}
export const SEGMENT_FORMAT: IngestFormat = { segment: true };
const NATIVE_FORMAT: IngestFormat = { segment: false };

/** Refusal codes counted under their own `reason`; any other refusal counts as `invalid_event`. */
const OWN_REASONS = new Set([
  'service_not_allowed',
  'event_too_large',
  'schema_violation',
  'unknown_event_type',
] as const);
type RejectReason = 'invalid_event' | (typeof OWN_REASONS extends Set<infer R> ? R : never);

export interface IngestPipeline {
  /** The validation context of a request received at `now`, sent with `keyId`. */
  validation(keyId: string | undefined, now?: number): ValidationContext;
  /**
   * One event: `400 invalid_event`, `403 service_not_allowed`, or its outcome. With `live`
   * (someone has the live view open), its outcome is published there too.
   */
  one(principal: Principal | undefined, input: unknown, live?: LiveRequest): Promise<SingleOutcome>;
  /**
   * Events of one request, each refused on its own: `rejected` already holds those refused
   * while reading (counted here too). Throws only for the whole request (backpressure, buffer).
   * With `live`, every event's outcome is published there once the request's is known.
   */
  many(
    principal: Principal | undefined,
    inputs: { index: number; value: unknown }[],
    rejected: Rejection[],
    ctx: ValidationContext,
    format?: IngestFormat,
    live?: LiveRequest,
  ): Promise<BatchOutcome>;
  /**
   * What {@link many} would answer for the same inputs, per event too, storing nothing: the
   * same checks, then a read-only look at the dedupe window. Counts nothing but
   * `events_validated`; never refused for backpressure (it buffers nothing).
   */
  dryRun(
    principal: Principal | undefined,
    inputs: { index: number; value: unknown }[],
    rejected: Rejection[],
    ctx: ValidationContext,
    format?: IngestFormat,
  ): Promise<DryRunOutcome>;
}

/** The per-event checks' verdict on a request's inputs, before anything is buffered or counted. */
export interface Screened {
  /** Events to buffer, in request order, as parsed (metadata not yet sealed). */
  valid: { index: number; event: NormalisedEvent; json: string }[];
  /** Events of opted-out subjects. */
  skipped: { index: number; event: NormalisedEvent }[];
  /** Events in `valid` that fail their tracking plan under `warn`: they carry `violations`. */
  warnings: Rejection[];
}

/** The event stored under `warn` (§14): its violations on it and in its JSON (the last field, as stored). */
function flagged(
  event: NormalisedEvent,
  json: string,
  verdict: PlanVerdict,
): { event: NormalisedEvent; json: string } {
  const violations = verdict.details;
  return {
    event: { ...event, violations },
    json: `${json.slice(0, -1)},"violations":${JSON.stringify(violations)}}`,
  };
}

const planIssue = (index: number, verdict: PlanVerdict): Rejection => ({
  index,
  code: verdict.code,
  message: verdict.message,
  details: verdict.details,
});

/** Why `principal` may not write an event of `service` (ARCHITECTURE §11), or undefined when it may. */
function serviceRefusal(principal: Principal | undefined, service: string): Rejection | undefined {
  if (!principal || mayUseService(principal, service)) return undefined;
  return {
    index: 0,
    code: 'service_not_allowed',
    message: `this key may not write events of service "${service}"`,
  };
}

export function ingestPipeline(deps: IngestDeps): IngestPipeline {
  const { producer, monitor, metrics } = deps;
  const maxAgeMs = maxRetentionDays(deps.config) * 86_400_000;
  // Undefined unless some metadata key is configured, so ingest pays nothing otherwise.
  const sealer = deps.cipher?.encrypting ? deps.cipher : undefined;
  const validation = (keyId: string | undefined, now = Date.now()): ValidationContext => ({
    now,
    maxAgeMs,
    keyId,
  });

  /**
   * Buffers the events `build` returns, inside a producer span: the traceparent each entry
   * carries is that span's, so a worker's batch span links to it.
   */
  const enqueue = (build: () => BufferedEvent[]): Promise<EnqueueOutcome[]> =>
    inSpan(
      'tributary.enqueue',
      { kind: SpanKind.PRODUCER, attributes: { 'messaging.system': 'redis' } },
      () => enqueueNow(build()),
    );
  const enqueueNow = async (items: BufferedEvent[]): Promise<EnqueueOutcome[]> => {
    try {
      const outcomes = await withBuffer(() => producer.enqueue(items));
      for (const o of outcomes) (o === 'accepted' ? metrics.eventsAccepted : metrics.eventsDuplicate).inc();
      return outcomes;
    } catch (err) {
      metrics.eventsRejected.inc({ reason: err instanceof ApiError ? err.code : 'internal' }, items.length);
      throw err;
    }
  };
  // The whole buffer over its mark, or this key over its share of it (BUFFER_MAX_SHARE_PER_KEY).
  const refuseWhenFull = (count: number, keyId: string | undefined) => {
    if (monitor.overloaded || (keyId !== undefined && monitor.keyLoad?.isOver(keyId))) {
      metrics.eventsRejected.inc({ reason: 'backpressure' }, count);
      throw errors.backpressure();
    }
  };
  const counted = (keyId: string | undefined, outcomes: EnqueueOutcome[]) => {
    if (keyId !== undefined) monitor.keyLoad?.added(keyId, outcomes.filter((o) => o === 'accepted').length);
    return outcomes;
  };
  const countRejected = (rejected: Rejection[]) => {
    const byReason = new Map<RejectReason, number>();
    for (const r of rejected) {
      const reason = OWN_REASONS.has(r.code as never) ? (r.code as RejectReason) : 'invalid_event';
      byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
    }
    for (const [reason, n] of byReason) metrics.eventsRejected.inc({ reason }, n);
  };
  const countVerdict = (v: PlanVerdict) =>
    metrics.schemaViolations.inc({
      service: v.service,
      type: v.label,
      action: v.action === 'reject' ? 'rejected' : 'warned',
    });

  /**
   * The per-event checks every ingest route and the dry run share: parse and validate, the
   * Segment size limit (`maxEventBytes`, 32 KB), the key's services, opt-outs. Refusals go
   * into `rejected`. The dry run calls it too, so nothing is counted, published or buffered here.
   */
  const screen = (
    principal: Principal | undefined,
    inputs: { index: number; value: unknown }[],
    rejected: Rejection[],
    ctx: ValidationContext,
    format: IngestFormat,
  ): Screened & { verdicts: PlanVerdict[] } => {
    const out: Screened & { verdicts: PlanVerdict[] } = {
      valid: [],
      skipped: [],
      warnings: [],
      verdicts: [],
    };
    const maxEventBytes = format.segment ? SEGMENT_LIMITS.maxCallBytes : undefined;
    // One snapshot for the whole request; none to consult when no service has a plan.
    const book = deps.plans?.book;
    const plans = book !== undefined && book.size > 0 ? book : undefined;
    const span = childSpan('tributary.validate', { events: inputs.length });
    // With `maxEventBytes` (the Segment routes' 32 KB), an event over it as stored, or whose
    // metadata is over the native limit, is refused as `event_too_large`; measured on the JSON
    // parseEvent makes anyway, so an event is serialised once.
    const tooLarge = (index: number): Rejection => ({
      index,
      code: 'event_too_large',
      message: `the event is larger than ${Math.round((maxEventBytes ?? 0) / 1024)} KB`,
    });
    for (const { index, value } of inputs) {
      const result = parseEvent(value, ctx);
      if (!result.ok) {
        const oversize = result.issues.length === 1 && result.issues[0]?.code === 'too_large';
        if (maxEventBytes !== undefined && oversize) rejected.push(tooLarge(index));
        else
          rejected.push({
            index,
            code: 'invalid_event',
            message: 'the event is invalid',
            details: result.issues,
          });
        continue;
      }
      if (
        maxEventBytes !== undefined &&
        result.json.length * 3 > maxEventBytes &&
        Buffer.byteLength(result.json) > maxEventBytes
      ) {
        rejected.push(tooLarge(index));
        continue;
      }
      const refusal = serviceRefusal(principal, result.event.service);
      if (refusal) {
        rejected.push({ ...refusal, index });
        continue;
      }
      if (deps.subjects?.isOptedOut(result.event.userId, result.event.anonymousId)) {
        out.skipped.push({ index, event: result.event });
        continue;
      }
      const verdict = plans?.check(result.event, format.segment);
      if (verdict === undefined) {
        out.valid.push({ index, event: result.event, json: result.json });
        continue;
      }
      out.verdicts.push(verdict);
      if (verdict.action === 'reject') rejected.push(planIssue(index, verdict));
      else {
        out.warnings.push(planIssue(index, verdict));
        out.valid.push({ index, ...flagged(result.event, result.json, verdict) });
      }
    }
    span.end();
    return out;
  };

  return {
    validation,

    async one(principal, input, live) {
      const span = childSpan('tributary.validate');
      const result = parseEvent(input, validation(principal?.keyId));
      span.end();
      if (!result.ok) {
        metrics.eventsRejected.inc({ reason: 'invalid_event' });
        const err = new ApiError('invalid_event', 400, 'the event is invalid', { details: result.issues });
        live?.refused(0, err, input);
        throw err;
      }
      const refusal = serviceRefusal(principal, result.event.service);
      if (refusal) {
        metrics.eventsRejected.inc({ reason: 'service_not_allowed' });
        live?.refused(0, refusal, input);
        throw new ApiError(refusal.code, 403, refusal.message);
      }
      if (deps.subjects?.isOptedOut(result.event.userId, result.event.anonymousId)) {
        metrics.eventsSkipped.inc({ reason: 'user_opt_out' });
        live?.skipped(0, result.event);
        return { id: result.event.id, status: 'skipped', reason: 'user_opt_out' };
      }
      const verdict = deps.plans?.book.check(result.event, false);
      if (verdict) countVerdict(verdict);
      if (verdict?.action === 'reject') {
        metrics.eventsRejected.inc({ reason: verdict.code });
        const issue = planIssue(0, verdict);
        live?.refused(0, issue, input);
        throw new ApiError(verdict.code, 400, verdict.message, { details: verdict.details });
      }
      refuseWhenFull(1, principal?.keyId);
      const checked = verdict ? flagged(result.event, result.json, verdict) : result;
      const { event, json } = sealer ? sealer.sealEvent(checked) : checked;
      const [outcome = 'accepted'] = counted(
        principal?.keyId,
        await enqueue(() => [{ event, json, traceparent: currentTraceparent() }]),
      );
      live?.stored(0, outcome, event, json);
      return verdict
        ? { id: result.event.id, status: outcome, warnings: [planIssue(0, verdict)] }
        : { id: result.event.id, status: outcome };
    },

    async many(principal, inputs, rejected, ctx, format = NATIVE_FORMAT, live) {
      const { valid, skipped, warnings, verdicts } = screen(principal, inputs, rejected, ctx, format);
      countRejected(rejected);
      for (const v of verdicts) countVerdict(v);
      if (skipped.length > 0) metrics.eventsSkipped.inc({ reason: 'user_opt_out' }, skipped.length);
      if (valid.length > 0) refuseWhenFull(valid.length, principal?.keyId);
      // Sealed once: what is buffered is also what the live view shows.
      const sealed = sealer ? valid.map((v) => sealer.sealEvent(v)) : valid;
      const outcomes =
        sealed.length > 0
          ? counted(
              principal?.keyId,
              await enqueue(() => {
                const traceparent = currentTraceparent();
                return sealed.map((v) => ({ event: v.event, json: v.json, traceparent }));
              }),
            )
          : [];
      rejected.sort((a, b) => a.index - b.index);
      // The arguments are built only while someone listens (`live` is undefined otherwise).
      live?.batch({
        inputs,
        rejected,
        skipped,
        valid: sealed,
        validIndex: sealed.map((v) => v.index),
        outcomes,
      });
      return {
        accepted: outcomes.filter((o) => o === 'accepted').length,
        duplicates: outcomes.filter((o) => o === 'duplicate').length,
        skipped: skipped.length,
        ids: valid.map((v) => v.event.id),
        rejected,
        ...(warnings.length > 0 ? { warnings } : {}),
      };
    },

    async dryRun(principal, inputs, rejected, ctx, format = NATIVE_FORMAT) {
      metrics.eventsValidated.inc(inputs.length + rejected.length);
      const screened = screen(principal, inputs, rejected, ctx, format);
      const { valid } = screened;
      const repeats =
        valid.length > 0 ? await withBuffer(() => producer.repeats(valid.map((v) => v.event))) : [];
      return dryRunOutcome(screened, repeats, rejected);
    },
  };
}
