import { Counter, type Registry } from 'prom-client';

/**
 * Every value each label of each labelled counter takes, by metric name. Each combination
 * is a series from the start, at 0: without it a counter has no series until its first
 * increment, so dashboards show "No data" and rate()/increase() miss that first increment.
 * test/unit/metrics.test.ts fails for a labelled counter missing here, and checks these
 * lists against the types the code counts with (DbFailure, DropReason, …).
 */
export const COUNTER_LABEL_VALUES = {
  tributary_events_rejected_total: {
    reason: [
      'invalid_event',
      'service_not_allowed',
      'event_too_large',
      'schema_violation',
      'unknown_event_type',
      'backpressure',
      'buffer_unavailable',
    ],
  },
  tributary_events_skipped_total: { reason: ['user_opt_out', 'erased'] },
  tributary_insert_failures_total: { kind: ['unavailable', 'data', 'transient'] },
  tributary_circuit_breaker_transitions_total: {
    dependency: ['postgres'],
    to: ['closed', 'open', 'half-open'],
  },
  tributary_circuit_breaker_opens_total: {
    dependency: ['postgres'],
    trigger: ['connection', 'slow_insert', 'error_rate'],
  },
  tributary_db_read_target_changes_total: { to: ['replica', 'primary'] },
  tributary_retention_passes_total: { outcome: ['completed', 'failed'] },
  tributary_dsar_requests_total: { kind: ['erasure', 'export'] },
  tributary_dsar_rows_erased_total: {
    place: ['database', 'buffer', 'checkpoint', 'archive', 'dead_letter', 'materialized'],
  },
  tributary_dsar_export_rows_total: { source: ['database', 'archive', 'dead_letter'] },
  tributary_metadata_decrypt_failures_total: { reason: ['unknown_key', 'bad_tag', 'malformed'] },
} as const satisfies Record<string, Record<string, readonly string[]>>;

export type LabelledCounterName = keyof typeof COUNTER_LABEL_VALUES;

/**
 * Labelled counters whose label values come from data, each with what bounds them. Their
 * series are made at 0 where that data is loaded rather than here.
 */
export const DATA_LABELLED_COUNTERS: Record<string, string> = {
  tributary_source_records_total:
    'source names (one per source an operator made) × kind × outcome; made at 0 for a source when a runner takes it',
  tributary_source_runs_total:
    'source names × kind × outcome (ok, failed); made at 0 when a runner takes a source',
  tributary_source_errors_total:
    "source names × kind × the failed run's error code (a handful: source_unreachable, source_unauthorized, …); a series appears with its first failure",
  tributary_webhook_deliveries_total:
    'webhook source names × outcome; made at 0 when an API process first looks the source up',
  tributary_materialize_events_total:
    'materialisation names (one per materialisation an operator made); made at 0 when a runner takes one',
  tributary_materialize_rows_total:
    "materialisation names × their tables (fixed ones, and event tables within the materialisation's eventTables cap)",
  tributary_materialize_errors_total: 'materialisation names; made at 0 when a runner takes one',
  tributary_materialize_conflicts_total: 'materialisation names; made at 0 when a runner takes one',
  tributary_schema_violations_total:
    'service and type of the tracking plans: registered types only, any other counted as "(unregistered)"; made at 0 by the plan registry on each load',
};

/** The values label `L` of counter `N` takes, as a type. */
export type CounterLabelValue<
  N extends LabelledCounterName,
  L extends keyof (typeof COUNTER_LABEL_VALUES)[N],
> = (typeof COUNTER_LABEL_VALUES)[N][L] extends readonly (infer V)[] ? V : never;

/** Every combination of the given label values (the cartesian product). */
export function labelCombinations(values: Record<string, readonly string[]>): Record<string, string>[] {
  let out: Record<string, string>[] = [{}];
  for (const [name, options] of Object.entries(values)) {
    out = out.flatMap((partial) => options.map((v) => ({ ...partial, [name]: v })));
  }
  return out;
}

/**
 * A counter of {@link COUNTER_LABEL_VALUES} with every known series at 0 from the start.
 * Its `collect` (run at every scrape) recreates any series a reset removed: `inc` by 0
 * leaves an existing series as it is.
 */
export function labelledCounter<N extends LabelledCounterName>(
  name: N,
  help: string,
  registers: Registry[],
): Counter<Extract<keyof (typeof COUNTER_LABEL_VALUES)[N], string>> {
  const values: Record<string, readonly string[]> = COUNTER_LABEL_VALUES[name];
  const combinations = labelCombinations(values);
  const counter = new Counter({
    name,
    help,
    labelNames: Object.keys(values),
    registers,
    collect() {
      for (const labels of combinations) this.inc(labels, 0);
    },
  });
  for (const labels of combinations) counter.inc(labels, 0);
  return counter;
}
