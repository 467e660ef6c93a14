import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { ErrorDetail } from '../api.ts';
import { LineChart } from '../chart.tsx';
import { LiveConnection, type LiveState } from '../live.ts';
import type { PageProps } from '../routes.ts';
import type { SseFrame } from '../sse.ts';
import { Badge, ErrorNotice, elsewhereHint, formatCount, formatTime, Section, type Tone } from '../ui.tsx';

// The landing page: every ingest outcome as it happens (`GET /v1/events/live`), filtered by
// service, type and outcome (kept in the address), with a throughput chart drawn from the
// server's per-second `stats` frames, which count every matching outcome, sampled or not.

const OUTCOMES = ['accepted', 'duplicate', 'skipped', 'refused'] as const;
type Outcome = (typeof OUTCOMES)[number];
const FILTERS = ['service', 'type', 'outcome'] as const;

/** An `outcome` frame's data (live-view protocol). */
interface OutcomeData {
  outcome: Outcome;
  at: string;
  route?: string;
  index: number | null;
  id: string | null;
  service: string | null;
  type: string | null;
  code?: string;
  message?: string;
  details?: ErrorDetail[];
  count?: number;
  [field: string]: unknown;
}
interface Row {
  key: string;
  data: OutcomeData;
}
interface Stats {
  at: string;
  accepted: number;
  duplicate: number;
  skipped: number;
  refused: number;
}
interface Sampling {
  rate: number;
  matchingPerSecond: number;
  maxPerSecond: number;
}

/** Rows kept on screen; older ones drop off the end. */
const MAX_ROWS = 300;
/** Rows held while paused, beyond which the oldest held are dropped (and counted). */
const MAX_HELD = 2_000;
/** Seconds of throughput the chart shows. */
const CHART_SECONDS = 120;

const TONES: Record<Outcome, Tone> = {
  accepted: 'good',
  duplicate: 'neutral',
  skipped: 'warn',
  refused: 'bad',
};

const splitList = (text: string): string[] =>
  text
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);

/** Each filter as the list the server takes (repeated or comma-separated: both are split here). */
const filterValues = (params: URLSearchParams, name: string): string[] =>
  params.getAll(name).flatMap(splitList);

function filterQuery(params: URLSearchParams): URLSearchParams {
  const query = new URLSearchParams();
  for (const name of FILTERS) {
    const values = filterValues(params, name);
    if (values.length) query.set(name, values.join(','));
  }
  return query;
}

const cssColor = (name: string, fallback: string) =>
  getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

function statusText(state: LiveState): string {
  switch (state.kind) {
    case 'connecting':
      return 'Connecting…';
    case 'open':
      return 'Live';
    case 'retrying':
      return `Reconnecting in ${Math.ceil(state.inMs / 1000)} s (${state.reason})`;
    case 'failed':
      return 'Stopped';
  }
}

export function LivePage({ params, setParams }: PageProps) {
  const query = useMemo(() => filterQuery(params), [params.toString()]);
  const [state, setState] = useState<LiveState>({ kind: 'connecting' });
  const [rows, setRows] = useState<Row[]>([]);
  const [paused, setPaused] = useState(false);
  const [held, setHeld] = useState({ count: 0, dropped: 0 });
  const [sampling, setSampling] = useState<Sampling | undefined>();
  const [gap, setGap] = useState<string | undefined>();
  const [stats, setStats] = useState<Stats[]>([]);
  const pausedRef = useRef(false);
  const heldRows = useRef<Row[]>([]);
  const dropped = useRef(0);
  const sequence = useRef(0);

  useEffect(() => {
    setRows([]);
    setStats([]);
    setSampling(undefined);
    setGap(undefined);
    const onFrame = (frame: SseFrame) => {
      const data = JSON.parse(frame.data) as unknown;
      if (frame.event === 'outcome') {
        const row = { key: frame.id || `n${sequence.current++}`, data: data as OutcomeData };
        if (pausedRef.current) {
          heldRows.current.unshift(row);
          if (heldRows.current.length > MAX_HELD) {
            heldRows.current.length = MAX_HELD;
            dropped.current++;
          }
          setHeld({ count: heldRows.current.length, dropped: dropped.current });
        } else {
          setRows((prev) => [row, ...prev].slice(0, MAX_ROWS));
        }
      } else if (frame.event === 'stats') {
        setStats((prev) => [...prev, data as Stats].slice(-CHART_SECONDS));
      } else if (frame.event === 'sampling') {
        const s = data as Sampling;
        setSampling(s.rate < 1 ? s : undefined);
      } else if (frame.event === 'gap') {
        setGap((data as { lastEventId?: string }).lastEventId ?? '');
      }
    };
    const connection = new LiveConnection({ query, onFrame, onState: setState });
    connection.start();
    return () => connection.stop();
  }, [query.toString()]);

  const togglePause = () => {
    const next = !pausedRef.current;
    pausedRef.current = next;
    setPaused(next);
    if (!next) {
      const resumed = heldRows.current;
      heldRows.current = [];
      dropped.current = 0;
      setHeld({ count: 0, dropped: 0 });
      setRows((prev) => [...resumed, ...prev].slice(0, MAX_ROWS));
    }
  };

  const hint = state.kind === 'failed' ? elsewhereHint(state.error, 'the live view', 'public') : undefined;

  return (
    <>
      <h1>Live</h1>
      <Filters params={params} setParams={setParams} />
      <div class="toolbar">
        <p class={`live-status live-${state.kind}`} role="status">
          {statusText(state)}
        </p>
        <button type="button" class={paused ? 'paused' : undefined} onClick={togglePause}>
          {paused ? `Resume${held.count ? ` (${formatCount(held.count)} new)` : ''}` : 'Pause'}
        </button>
        <button type="button" onClick={() => setRows([])} disabled={rows.length === 0}>
          Clear list
        </button>
      </div>
      {state.kind === 'failed' && (
        <ErrorNotice error={state.error} title="The live view stopped">
          {hint && <p>{hint}</p>}
        </ErrorNotice>
      )}
      {sampling && (
        <p class="notice" role="status">
          Sampling: about 1 in {Math.round(1 / sampling.rate)} of {formatCount(sampling.matchingPerSecond)}{' '}
          matching outcomes per second is listed (at most {sampling.maxPerSecond}/s). The chart counts every
          one.
        </p>
      )}
      {gap !== undefined && (
        <div class="notice notice-warn" role="status">
          Some outcomes were missed while disconnected: the server no longer holds the point this view resumed
          from
          {gap ? ` (${gap})` : ''}; it continued from the oldest it holds.{' '}
          <button type="button" onClick={() => setGap(undefined)}>
            Dismiss
          </button>
        </div>
      )}
      {held.dropped > 0 && (
        <p class="notice notice-warn">
          More than {formatCount(MAX_HELD)} arrived while paused; the oldest of them will not be listed.
        </p>
      )}
      <Throughput stats={stats} />
      <Section id="outcomes" title="Outcomes">
        {rows.length === 0 ? (
          <p class="empty">Nothing yet. Outcomes appear here as events arrive.</p>
        ) : (
          <ol class="outcomes">
            {rows.map((r) => (
              <OutcomeRow key={r.key} data={r.data} />
            ))}
          </ol>
        )}
      </Section>
    </>
  );
}

function Filters({ params, setParams }: Pick<PageProps, 'params' | 'setParams'>) {
  const chosen = new Set(filterValues(params, 'outcome'));
  const apply = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const next = new URLSearchParams();
    for (const name of ['service', 'type'] as const) {
      const values = splitList(String(form.get(name) ?? ''));
      if (values.length) next.set(name, values.join(','));
    }
    const outcomes = form.getAll('outcome').map(String);
    if (outcomes.length > 0 && outcomes.length < OUTCOMES.length) next.set('outcome', outcomes.join(','));
    setParams(next);
  };
  return (
    // Keyed by the address, so Back/Forward and deep links show the filters in force.
    <form class="filters" key={params.toString()} onSubmit={apply} aria-label="Filters">
      <label>
        Service
        <input name="service" defaultValue={filterValues(params, 'service').join(', ')} placeholder="any" />
      </label>
      <label>
        Type
        <input name="type" defaultValue={filterValues(params, 'type').join(', ')} placeholder="any" />
      </label>
      <fieldset>
        <legend>Outcome</legend>
        {OUTCOMES.map((o) => (
          <label key={o} class="check">
            <input type="checkbox" name="outcome" value={o} defaultChecked={chosen.has(o)} />
            {o}
          </label>
        ))}
      </fieldset>
      <div class="filter-actions">
        <button type="submit" class="primary">
          Apply filters
        </button>
        <button type="button" onClick={() => setParams(new URLSearchParams())}>
          Clear filters
        </button>
      </div>
    </form>
  );
}

function Throughput({ stats }: { stats: Stats[] }) {
  const data = useMemo(
    () => [
      stats.map((s) => Date.parse(s.at) / 1000),
      stats.map((s) => s.accepted),
      stats.map((s) => s.refused),
    ],
    [stats],
  );
  const series = useMemo(
    () => [
      { label: 'accepted', color: cssColor('--accepted', '#1b7f3b') },
      { label: 'refused', color: cssColor('--refused', '#c62828') },
    ],
    [],
  );
  const last = stats.at(-1);
  return (
    <Section id="throughput" title="Throughput" class="throughput">
      <LineChart
        label="Accepted and refused events per second, last two minutes"
        series={series}
        data={data}
        windowSeconds={CHART_SECONDS}
      />
      <p class="chart-summary">
        {last
          ? `Last second: ${formatCount(last.accepted)} accepted, ${formatCount(last.refused)} refused, ${formatCount(last.duplicate)} duplicate, ${formatCount(last.skipped)} skipped.`
          : 'Waiting for the first second of counts…'}
      </p>
    </Section>
  );
}

function OutcomeRow({ data }: { data: OutcomeData }) {
  const paths = (data.details ?? []).filter((d) => d.path !== undefined);
  return (
    <li class={`outcome outcome-${data.outcome}`}>
      <details>
        <summary>
          <time dateTime={data.at}>{formatTime(data.at)}</time>
          <Badge tone={TONES[data.outcome] ?? 'neutral'}>{data.outcome}</Badge>
          <span class="service">{data.service ?? '—'}</span>
          <span class="type">{data.type ?? (data.index === null ? 'whole request' : '—')}</span>
          {data.code && <code class="outcome-code">{data.code}</code>}
          {paths.map((d) => (
            <span class="failing-path" key={`${d.path}:${d.message}`}>
              <code>{d.path}</code> {d.message}
            </span>
          ))}
          {data.outcome === 'refused' && paths.length === 0 && data.message && (
            <span class="failing-path">{data.message}</span>
          )}
        </summary>
        <pre class="json">{JSON.stringify(data, null, 2)}</pre>
      </details>
    </li>
  );
}
