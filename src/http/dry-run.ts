import type { EnqueueOutcome } from '../buffer/producer.ts';
import type { NormalisedEvent } from '../events/event.schema.ts';
import type { BatchOutcome, Rejection, Screened } from './ingest.ts';

/** What one event of a dry run would get (`POST /v1/events/validate`). */
export type DryRunResult =
  | {
      index: number;
      status: EnqueueOutcome;
      id: string;
      event: NormalisedEvent;
      /** Stored although it fails its tracking plan (`warn`): why. */
      warning?: Omit<Rejection, 'index'>;
    }
  | { index: number; status: 'skipped'; id: string; reason: 'user_opt_out'; event: NormalisedEvent }
  | ({ status: 'rejected' } & Rejection);

/** What a batch request would answer, plus each event's part of it in request order; nothing was buffered. */
export interface DryRunOutcome extends BatchOutcome {
  dryRun: true;
  results: DryRunResult[];
}

/**
 * The answer of a dry run: the counts and lists ingest would give, and one result per
 * event. `repeats[k]` says whether `screened.valid[k]` would be a duplicate.
 */
export function dryRunOutcome(
  screened: Screened,
  repeats: readonly boolean[],
  rejected: Rejection[],
): DryRunOutcome {
  const { valid, skipped, warnings } = screened;
  rejected.sort((a, b) => a.index - b.index);
  const warned = new Map(warnings.map(({ index, ...warning }) => [index, warning]));
  const results: DryRunResult[] = [
    ...valid.map(({ index, event }, k): DryRunResult => {
      const warning = warned.get(index);
      return {
        index,
        status: repeats[k] ? 'duplicate' : 'accepted',
        id: event.id,
        event,
        ...(warning ? { warning } : {}),
      };
    }),
    ...skipped.map(
      ({ index, event }): DryRunResult => ({
        index,
        status: 'skipped',
        id: event.id,
        reason: 'user_opt_out',
        event,
      }),
    ),
    ...rejected.map(({ index, ...refusal }): DryRunResult => ({ index, status: 'rejected', ...refusal })),
  ].sort((a, b) => a.index - b.index);
  const duplicates = repeats.filter(Boolean).length;
  return {
    accepted: valid.length - duplicates,
    duplicates,
    skipped: skipped.length,
    ids: valid.map((v) => v.event.id),
    rejected,
    ...(warnings.length > 0 ? { warnings } : {}),
    dryRun: true,
    results,
  };
}
