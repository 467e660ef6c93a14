import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, api, hasAnyScope } from '../api.ts';
import type { PageProps } from '../routes.ts';
import {
  Badge,
  ErrorNotice,
  elsewhereHint,
  formatAgo,
  formatBytes,
  formatCount,
  formatPercent,
  Section,
  Table,
  type Tone,
  usePolling,
} from '../ui.tsx';

// Pipeline health from `GET /health` (buffer per partition, lag, workers, breaker, checkpoint,
// dead letters), polled; dead letters replayed with `POST /v1/admin/dead-letter/replay`.

type Breaker = 'closed' | 'half-open' | 'open';
interface Check {
  ok: boolean;
  latencyMs?: number;
  error?: string;
}
interface Health {
  status: 'ok' | 'degraded' | 'unavailable';
  redis: Check;
  database: Check;
  buffer: {
    length: number;
    pending: number;
    lag: number;
    maxEvents: number;
    utilisation: number;
    memoryRatio: number | null;
    deadLetters: number;
    backpressure: boolean;
    partitions: { partition: number; length: number; pending: number; lag: number | null }[];
  } | null;
  circuitBreaker: Breaker | 'no workers' | 'unknown';
  circuitBreakerTrigger: string | null;
  reads: {
    replicaConfigured: boolean;
    target: 'replica' | 'primary';
    lagS: number | null;
    reason: string | null;
  };
  checkpoint: { events: number; segments: number; bytes: number; failed: string[] } | null;
  workers:
    | {
        name: string;
        breaker: Breaker;
        breakerSince: string;
        breakerTrigger?: string;
        checkpoint: { segments: number; bytes: number; events: number; failed?: string };
        volume?: { freeBytes: number; totalBytes: number; low: boolean };
        memory?: { rssBytes: number; limitBytes: number };
        at: string;
      }[]
    | null;
}

const POLL_MS = 2_000;

/** What opened a breaker, in words. */
const TRIGGER_TEXT: Record<string, string> = {
  connection: 'connection failures',
  slow_insert: 'slow inserts',
  error_rate: 'the error rate',
};

/** Where reads go: the replica (with its lag), or the primary (and why, when a replica is configured). */
function readsText(reads: Health['reads']): string {
  if (!reads.replicaConfigured) return 'primary (no replica)';
  if (reads.target === 'replica') return `replica, ${reads.lagS ?? '?'} s behind`;
  return `primary: ${reads.reason ?? 'replica not usable'}`;
}
/** What one replay call moves at most (the route's default `limit`). */
const REPLAY_LIMIT = 10_000;

const STATUS_TONE: Record<Health['status'], Tone> = { ok: 'good', degraded: 'warn', unavailable: 'bad' };
const breakerTone = (b: Health['circuitBreaker']): Tone =>
  b === 'closed' ? 'good' : b === 'half-open' || b === 'no workers' ? 'warn' : 'bad';

export function PipelinePage({ who }: PageProps) {
  const [health, setHealth] = useState<Health | undefined>();
  const [error, setError] = useState<unknown>();
  const [checkedAt, setCheckedAt] = useState<string | undefined>();

  const refresh = async () => {
    try {
      // 503 carries the same report (Redis unreachable): show it rather than an error.
      setHealth(await api<Health>('/health', { accept: [503] }));
      setError(undefined);
      setCheckedAt(new Date().toISOString());
    } catch (err) {
      setError(err);
    }
  };
  usePolling(refresh, POLL_MS);

  const hint = elsewhereHint(error, 'pipeline health', 'admin');
  return (
    <>
      <h1>Pipeline health</h1>
      <p class="hint" role="status">
        {checkedAt
          ? `Updated ${new Date(checkedAt).toLocaleTimeString()}, every ${POLL_MS / 1000} s.`
          : 'Loading…'}
      </p>
      {error !== undefined && (
        <ErrorNotice error={error} title="Health could not be read">
          {hint && <p>{hint}</p>}
        </ErrorNotice>
      )}
      {health && (
        <>
          <Overview health={health} />
          <DeadLetters
            count={health.buffer?.deadLetters ?? null}
            canReplay={hasAnyScope(who, ['admin'])}
            onReplayed={refresh}
          />
          <Partitions health={health} />
          <Workers health={health} />
          <Checkpoint health={health} />
        </>
      )}
    </>
  );
}

function Overview({ health }: { health: Health }) {
  const b = health.buffer;
  return (
    <Section id="overview" title="Overview">
      <dl class="cards">
        <div class="card">
          <dt>Status</dt>
          <dd>
            <Badge tone={STATUS_TONE[health.status]}>{health.status}</Badge>
          </dd>
        </div>
        <div class="card">
          <dt>Circuit breaker</dt>
          <dd data-testid="breaker">
            <Badge tone={breakerTone(health.circuitBreaker)}>{health.circuitBreaker}</Badge>
          </dd>
          {health.circuitBreakerTrigger && (
            <dd class="hint" data-testid="breaker-trigger">
              opened by {TRIGGER_TEXT[health.circuitBreakerTrigger] ?? health.circuitBreakerTrigger}
            </dd>
          )}
        </div>
        <div class="card">
          <dt>Reads</dt>
          <dd data-testid="reads">{readsText(health.reads)}</dd>
        </div>
        <div class="card">
          <dt>Redis</dt>
          <dd>{checkText(health.redis)}</dd>
        </div>
        <div class="card">
          <dt>PostgreSQL</dt>
          <dd>{checkText(health.database)}</dd>
        </div>
        <div class="card">
          <dt>Buffered</dt>
          <dd>
            {b
              ? `${formatCount(b.length)} of ${formatCount(b.maxEvents)} (${formatPercent(b.utilisation)})`
              : 'unknown'}
            {b?.backpressure && <Badge tone="bad">backpressure</Badge>}
          </dd>
        </div>
        <div class="card">
          <dt>Lag</dt>
          <dd>
            {b ? `${formatCount(b.lag)} not yet delivered, ${formatCount(b.pending)} pending` : 'unknown'}
          </dd>
        </div>
        {b?.memoryRatio != null && (
          <div class="card">
            <dt>Redis memory</dt>
            <dd>{formatPercent(b.memoryRatio)} of maxmemory</dd>
          </div>
        )}
      </dl>
    </Section>
  );
}

const checkText = (c: Check) =>
  c.ok ? `up${c.latencyMs !== undefined ? `, ${c.latencyMs} ms` : ''}` : `down: ${c.error ?? 'no answer'}`;

function DeadLetters(props: { count: number | null; canReplay: boolean; onReplayed(): Promise<void> }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();
  const confirmButton = useRef<HTMLButtonElement>(null);
  const startButton = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (confirming) confirmButton.current?.focus();
  }, [confirming]);

  const replay = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const { replayed } = await api<{ replayed: number }>('/v1/admin/dead-letter/replay', {
        method: 'POST',
      });
      setResult(`Replayed ${formatCount(replayed)} ${replayed === 1 ? 'entry' : 'entries'}.`);
      await props.onReplayed();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
      setConfirming(false);
      startButton.current?.focus();
    }
  };

  const count = props.count;
  return (
    <Section id="dead" title="Dead letters">
      <p>
        <span class="big-number" data-testid="dead-letters">
          {count === null ? 'unknown' : formatCount(count)}
        </span>{' '}
        {count === 1
          ? 'entry failed too often to be stored and waits in the dead-letter stream.'
          : 'entries failed too often to be stored and wait in the dead-letter stream.'}
      </p>
      {props.canReplay ? (
        confirming ? (
          <div class="confirm">
            <p>
              {count === 1
                ? 'Move it back to its stream? Workers will try to store it again.'
                : `Move ${(count ?? 0) > REPLAY_LIMIT ? `the oldest ${formatCount(REPLAY_LIMIT)} of the ${formatCount(count ?? 0)}` : `all ${formatCount(count ?? 0)}`} back to their streams? Workers will try to store them again.`}
            </p>
            <button type="button" class="primary" ref={confirmButton} onClick={replay} disabled={busy}>
              {busy ? 'Replaying…' : 'Replay now'}
            </button>
            <button type="button" onClick={() => setConfirming(false)} disabled={busy}>
              Cancel
            </button>
          </div>
        ) : (
          <button
            type="button"
            ref={startButton}
            onClick={() => {
              setResult(undefined);
              setConfirming(true);
            }}
            disabled={!count}
          >
            Replay dead letters…
          </button>
        )
      ) : (
        <p class="hint">Replaying needs a key with the admin scope.</p>
      )}
      <div role="status">{result && <p class="notice">{result}</p>}</div>
      {error !== undefined && (
        <ErrorNotice error={error} title="Replay failed">
          {elsewhereHint(error, 'admin calls', 'admin') && (
            <p>{elsewhereHint(error, 'admin calls', 'admin')}</p>
          )}
        </ErrorNotice>
      )}
    </Section>
  );
}

function Partitions({ health }: { health: Health }) {
  const parts = health.buffer?.partitions ?? [];
  return (
    <Section id="partitions" title="Buffer by partition">
      {parts.length === 0 ? (
        <p class="empty">No partition report.</p>
      ) : (
        <Table class="partitions" columns={['Partition', 'Buffered', 'Pending', 'Lag']}>
          {parts.map((p) => (
            <tr key={p.partition}>
              <th scope="row">{p.partition}</th>
              <td>{formatCount(p.length)}</td>
              <td>{formatCount(p.pending)}</td>
              <td>{p.lag === null ? 'unknown' : formatCount(p.lag)}</td>
            </tr>
          ))}
        </Table>
      )}
    </Section>
  );
}

function Workers({ health }: { health: Health }) {
  const workers = health.workers;
  return (
    <Section id="workers" title="Workers">
      {workers === null ? (
        <p class="empty">The workers' reports could not be read.</p>
      ) : workers.length === 0 ? (
        <p class="empty">No worker is running: events stay in the buffer until one starts.</p>
      ) : (
        <Table columns={['Worker', 'Breaker', 'Checkpoint', 'Disk free', 'Memory', 'Reported']}>
          {workers.map((w) => (
            <tr key={w.name}>
              <th scope="row">{w.name}</th>
              <td>
                <Badge tone={breakerTone(w.breaker)}>{w.breaker}</Badge>{' '}
                <span class="hint">since {formatAgo(w.breakerSince)}</span>
                {w.breaker !== 'closed' && w.breakerTrigger && (
                  <span class="hint"> · {TRIGGER_TEXT[w.breakerTrigger] ?? w.breakerTrigger}</span>
                )}
              </td>
              <td>
                {formatCount(w.checkpoint.events)} events, {formatBytes(w.checkpoint.bytes)}
                {w.checkpoint.failed && <Badge tone="bad">failed: {w.checkpoint.failed}</Badge>}
              </td>
              <td data-testid="disk">
                {w.volume ? (
                  <>
                    {formatBytes(w.volume.freeBytes)} of {formatBytes(w.volume.totalBytes)}
                    {w.volume.low && <Badge tone="warn">low</Badge>}
                  </>
                ) : (
                  '—'
                )}
              </td>
              <td data-testid="memory">{w.memory ? formatBytes(w.memory.rssBytes) : '—'}</td>
              <td>{formatAgo(w.at)}</td>
            </tr>
          ))}
        </Table>
      )}
    </Section>
  );
}

function Checkpoint({ health }: { health: Health }) {
  const c = health.checkpoint;
  return (
    <Section id="checkpoint" title="Disk checkpoint">
      {c === null ? (
        <p class="empty">Unknown.</p>
      ) : (
        <>
          <p>
            {c.events === 0
              ? 'Empty: every batch went straight to PostgreSQL.'
              : `${formatCount(c.events)} events in ${formatCount(c.segments)} segments (${formatBytes(c.bytes)}) wait to be replayed into PostgreSQL.`}
          </p>
          {c.failed.length > 0 && (
            <ErrorNotice
              error={new ApiError('checkpoint_failed', 0, 'a checkpoint no longer accepts writes')}
            >
              <ul>
                {c.failed.map((f) => (
                  <li key={f}>{f}</li>
                ))}
              </ul>
            </ErrorNotice>
          )}
        </>
      )}
    </Section>
  );
}
