import '../pages.css';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ADMIN_CALLS, Outcome, useAction } from '../action.tsx';
import { ApiError, api } from '../api.ts';
import { ArchivesSection } from '../archives.tsx';
import type { PageProps } from '../routes.ts';
import { formatDuration } from '../time.ts';
import { Badge, ErrorNotice, formatBytes, formatCount, Section, Table, type Tone } from '../ui.tsx';
import { useWatch } from '../watch.ts';

// Retention passes (`GET /v1/admin/retention/runs`, one with its steps at `…/runs/:runId`),
// "run now" (`POST /v1/admin/retention/run`, then followed until it ends) and the archives it
// wrote. The run shown in detail is in the address (`#/retention?run=<id>`), so it reloads.

/** `GET /v1/admin/retention/runs/:runId`; the list answers the same without `steps`. */
export interface Run {
  id: string;
  trigger: string;
  status: string;
  holder: string;
  startedAt: string;
  heartbeatAt: string;
  finishedAt: string | null;
  rowsArchived: number;
  bytesArchived: number;
  rowsDeleted: number;
  rowsAnonymized: number;
  partitionsDropped: string[];
  steps?: Step[];
  error: string | null;
}
interface Step {
  at: string;
  step: string;
  [detail: string]: unknown;
}

const RUNS_SHOWN = 20;

export const runTone = (status: string): Tone =>
  status === 'completed' ? 'good' : status === 'running' ? 'warn' : status === 'failed' ? 'bad' : 'neutral';

const took = (r: Run) =>
  r.finishedAt ? formatDuration(Date.parse(r.finishedAt) - Date.parse(r.startedAt)) : '—';

export function RetentionPage({ params, setParams }: PageProps) {
  const [runs, setRuns] = useState<Run[] | undefined>();
  const [selected, setSelected] = useState<Run | undefined>();
  const [error, setError] = useState<unknown>();
  const start = useAction();
  // Bumped when a pass ends, so the archives it wrote are listed.
  const [archivesVersion, setArchivesVersion] = useState(0);
  const runId = params.get('run') ?? undefined;

  const shown = useRef<Run[] | undefined>(undefined);

  const fetchRuns = async () =>
    (await api<{ runs: Run[] }>(`/v1/admin/retention/runs?limit=${RUNS_SHOWN}`)).runs;
  const loadRuns = async () => {
    try {
      applyRuns(await fetchRuns());
    } catch (err) {
      setError(err);
    }
  };
  const applyRuns = (list: Run[]) => {
    const before = shown.current;
    shown.current = list;
    setRuns(list);
    setError(undefined);
    // A pass that ended since the last look (or started and ended between two) has written
    // its archives: list them again.
    const ended = (r: Run) =>
      r.status !== 'running' && before?.find((b) => b.id === r.id)?.status !== r.status;
    if (before && list.some(ended)) setArchivesVersion((v) => v + 1);
  };
  const loadSelected = async (id: string) => {
    try {
      setSelected(await api<Run>(`/v1/admin/retention/runs/${encodeURIComponent(id)}`));
    } catch (err) {
      setSelected(undefined);
      setError(err);
    }
  };

  useEffect(() => {
    void loadRuns();
  }, []);
  useEffect(() => {
    setSelected(undefined);
    if (runId) void loadSelected(runId);
  }, [runId]);

  const running = (runs ?? []).some((r) => r.status === 'running') || selected?.status === 'running';
  // The followed pass is read first, then the list, and both are shown at once: a pass that
  // ended between the two reads is never shown completed above while the list says running.
  useWatch(running, async () => {
    try {
      const detail = runId
        ? await api<Run>(`/v1/admin/retention/runs/${encodeURIComponent(runId)}`)
        : undefined;
      const list = await fetchRuns();
      applyRuns(list);
      if (detail) setSelected(detail);
    } catch (err) {
      setError(err);
    }
  });

  const show = (id: string | undefined) => {
    const next = new URLSearchParams(params);
    if (id) next.set('run', id);
    else next.delete('run');
    setParams(next);
  };

  const runNow = async () => {
    await start.run(async () => {
      try {
        const r = await api<{ runId: string }>('/v1/admin/retention/run', { method: 'POST' });
        show(r.runId);
        return `Retention pass ${r.runId} started.`;
      } catch (err) {
        // Another pass is running: show that one instead.
        const other =
          err instanceof ApiError && err.code === 'retention_running' ? err.details[0]?.message : '';
        if (other) show(other);
        throw err;
      }
    });
    await loadRuns();
  };

  return (
    <>
      <h1>Retention and archives</h1>
      <p class="hint lead">
        A pass archives what has passed its retention to object storage as Parquet, verifies it, then deletes
        it from PostgreSQL; it also anonymises what has passed ANONYMIZE_AFTER_DAYS.
      </p>
      <div class="actions">
        <button type="button" class="primary" onClick={runNow} disabled={start.busy || running}>
          {start.busy ? 'Starting…' : running ? 'A pass is running' : 'Run a pass now'}
        </button>
      </div>
      <Outcome action={start} title="Pass not started" where={ADMIN_CALLS} />
      <Outcome
        action={{ result: undefined, error }}
        title="Retention could not be read"
        where={ADMIN_CALLS}
      />
      {selected && <RunDetail run={selected} onClose={() => show(undefined)} />}
      <RunsSection runs={runs} selectedId={runId} onShow={show} />
      <ArchivesSection version={archivesVersion} />
    </>
  );
}

function RunsSection(props: {
  runs: Run[] | undefined;
  selectedId: string | undefined;
  onShow(id: string): void;
}) {
  const { runs } = props;
  return (
    <Section id="runs" title="Passes">
      {runs === undefined ? (
        <p class="empty">Loading…</p>
      ) : runs.length === 0 ? (
        <p class="empty">No retention pass has run yet.</p>
      ) : (
        <>
          <p class="hint lead">The {RUNS_SHOWN} newest, newest first.</p>
          <Table
            class="runs"
            columns={[
              'Started',
              'Trigger',
              'Status',
              'Took',
              'Archived',
              'Deleted',
              'Anonymised',
              'Partitions dropped',
              'Details',
            ]}
          >
            {runs.map((r) => (
              <tr key={r.id} data-run-id={r.id} aria-current={r.id === props.selectedId ? 'true' : undefined}>
                <td>{new Date(r.startedAt).toLocaleString()}</td>
                <td>{r.trigger}</td>
                <td>
                  <Badge tone={runTone(r.status)}>{r.status}</Badge>
                </td>
                <td>{took(r)}</td>
                <td>
                  {formatCount(r.rowsArchived)} rows, {formatBytes(r.bytesArchived)}
                </td>
                <td>{formatCount(r.rowsDeleted)}</td>
                <td>{formatCount(r.rowsAnonymized)}</td>
                <td>{r.partitionsDropped.length ? r.partitionsDropped.join(', ') : '—'}</td>
                <td>
                  <button type="button" class="small" onClick={() => props.onShow(r.id)}>
                    Show
                    <span class="visually-hidden">
                      {' '}
                      the pass started {new Date(r.startedAt).toLocaleString()}
                    </span>
                  </button>
                </td>
              </tr>
            ))}
          </Table>
        </>
      )}
    </Section>
  );
}

/** One step of the log: its name, then its details as `name value` pairs. */
function StepLine({ step }: { step: Step }) {
  const { at, step: name, ...detail } = step;
  return (
    <li>
      <time dateTime={at}>{new Date(at).toLocaleTimeString()}</time> <code>{name}</code>{' '}
      {Object.entries(detail).map(([k, v]) => (
        <span key={k} class="step-detail">
          {k} <strong>{typeof v === 'string' ? v : JSON.stringify(v)}</strong>
        </span>
      ))}
    </li>
  );
}

function RunDetail({ run, onClose }: { run: Run; onClose(): void }) {
  const steps = run.steps ?? [];
  return (
    <section aria-labelledby="run-heading" class="panel" data-testid="run-detail">
      <div class="panel-head">
        <h2 id="run-heading">
          Pass <code>{run.id}</code> <Badge tone={runTone(run.status)}>{run.status}</Badge>
        </h2>
        <button type="button" class="small" onClick={onClose}>
          Close
        </button>
      </div>
      <dl class="cards">
        <div class="card">
          <dt>Started</dt>
          <dd>
            {new Date(run.startedAt).toLocaleString()} ({run.trigger})
          </dd>
        </div>
        <div class="card">
          <dt>{run.finishedAt ? 'Took' : 'Last heartbeat'}</dt>
          <dd>{run.finishedAt ? took(run) : new Date(run.heartbeatAt).toLocaleTimeString()}</dd>
        </div>
        <div class="card">
          <dt>Archived</dt>
          <dd data-testid="run-archived">
            {formatCount(run.rowsArchived)} rows, {formatBytes(run.bytesArchived)}
          </dd>
        </div>
        <div class="card">
          <dt>Deleted from PostgreSQL</dt>
          <dd>{formatCount(run.rowsDeleted)} rows</dd>
        </div>
        <div class="card">
          <dt>Anonymised</dt>
          <dd>{formatCount(run.rowsAnonymized)} rows</dd>
        </div>
        <div class="card">
          <dt>Partitions dropped</dt>
          <dd>{run.partitionsDropped.length ? run.partitionsDropped.join(', ') : 'none'}</dd>
        </div>
        <div class="card">
          <dt>Run by</dt>
          <dd>{run.holder}</dd>
        </div>
      </dl>
      {run.error && <ErrorNotice error={new ApiError('retention_failed', 0, run.error)} />}
      <h3>Steps</h3>
      {steps.length === 0 ? (
        <p class="empty">
          {run.status === 'running'
            ? 'No step yet.'
            : run.status === 'completed'
              ? 'None: nothing had passed its retention.'
              : 'None recorded.'}
        </p>
      ) : (
        <ol class="steps">
          {steps.map((s, i) => (
            <StepLine key={`${i}:${s.at}`} step={s} />
          ))}
        </ol>
      )}
    </section>
  );
}
