import '../pages.css';
import { useState } from 'preact/hooks';
import { ADMIN_CALLS, Outcome, useAction } from '../action.tsx';
import { api } from '../api.ts';
import type { PageProps } from '../routes.ts';
import { Badge, formatAgo, formatCount, Table, type Tone, usePolling } from '../ui.tsx';

// Sources (admin, ARCHITECTURE §15): every source with its state (`GET /v1/admin/sources`):
// where it runs, what it read and what became of it, its last run and last error, the last
// record it refused; a pause or resume button per source (`PATCH /v1/admin/sources/:id`).

/** One source of `GET /v1/admin/sources` (never its secrets). */
export interface Source {
  id: string;
  kind: 'postgres' | 'http' | 'webhook';
  name: string;
  service: string;
  paused: boolean;
  settings: Record<string, unknown>;
  secrets: string[];
  webhookPath?: string;
  state: {
    position: Record<string, unknown> | null;
    rowsRead: number;
    eventsAccepted: number;
    eventsDuplicate: number;
    eventsRejected: number;
    eventsSkipped: number;
    lastRejection: { at?: string; code?: string; message?: string; details?: { path: string }[] } | null;
    lastRunAt: string | null;
    lastSuccessAt: string | null;
    lastError: string | null;
    lastErrorAt: string | null;
    failures: number;
    nextRunAt: string | null;
    runningOn: string | null;
  };
}

const KINDS = { postgres: 'PostgreSQL table', http: 'HTTP API', webhook: 'Webhook' } as const;
const REFRESH_MS = 5_000;

/** The state in one word: paused, running, failing, waiting (a pull source between runs) or receiving (a webhook). */
export function sourceStatus(s: Source): { label: string; tone: Tone } {
  if (s.paused) return { label: 'paused', tone: 'neutral' };
  if (s.state.failures > 0) return { label: `failing (${s.state.failures} in a row)`, tone: 'bad' };
  if (s.state.runningOn) return { label: 'running', tone: 'good' };
  return s.kind === 'webhook' ? { label: 'receiving', tone: 'good' } : { label: 'waiting', tone: 'neutral' };
}

/** What the source reads: its table, its URL, or where a third party posts. */
function readsFrom(s: Source): string {
  if (s.kind === 'postgres') return String(s.settings.table ?? '');
  if (s.kind === 'http') return String(s.settings.url ?? '');
  return s.webhookPath ?? '';
}

const when = (iso: string | null, now: number) => (iso ? formatAgo(iso, now) : '—');

function SourceRow(props: { source: Source; now: number; onChanged(): void }) {
  const s = props.source;
  const action = useAction();
  const status = sourceStatus(s);
  const toggle = () =>
    void action.run(async () => {
      const changed = await api<Source>(`/v1/admin/sources/${encodeURIComponent(s.id)}`, {
        method: 'PATCH',
        body: { paused: !s.paused },
      });
      props.onChanged();
      return changed.paused ? `${s.name} is paused` : `${s.name} is resumed`;
    });
  const st = s.state;
  const rejection = st.lastRejection;
  return (
    <tr data-source={s.name}>
      <th scope="row">
        {s.name}
        <div class="hint">
          {KINDS[s.kind]} · {s.service}
        </div>
        <div class="hint source-reads">{readsFrom(s)}</div>
      </th>
      <td>
        <Badge tone={status.tone}>{status.label}</Badge>
        {st.runningOn && <div class="hint">on {st.runningOn}</div>}
      </td>
      <td class="num" data-field="read">
        {formatCount(st.rowsRead)}
      </td>
      <td class="num" data-field="accepted">
        {formatCount(st.eventsAccepted)}
      </td>
      <td class="num">{formatCount(st.eventsDuplicate)}</td>
      <td class="num" data-field="rejected">
        {formatCount(st.eventsRejected)}
        {rejection && (
          <div class="hint" data-field="last-rejection">
            last: {rejection.code} {rejection.details?.[0]?.path ? `(${rejection.details[0].path})` : ''}
          </div>
        )}
      </td>
      <td>
        {s.kind === 'webhook' ? (
          <div>delivery {when(st.lastRunAt, props.now)}</div>
        ) : (
          <>
            <div>run {when(st.lastRunAt, props.now)}</div>
            <div class="hint">ok {when(st.lastSuccessAt, props.now)}</div>
          </>
        )}
        {s.kind !== 'webhook' && !s.paused && st.nextRunAt && (
          <div class="hint">
            next {Date.parse(st.nextRunAt) > props.now ? new Date(st.nextRunAt).toLocaleTimeString() : 'now'}
          </div>
        )}
      </td>
      <td data-field="error">
        {st.lastError ? (
          <p class={st.failures > 0 ? 'error-text' : 'hint'}>
            {st.failures > 0 ? '' : 'recovered: '}
            {st.lastError}
            <span class="hint"> ({when(st.lastErrorAt, props.now)})</span>
          </p>
        ) : (
          <span class="hint">none</span>
        )}
      </td>
      <td>
        <button
          type="button"
          disabled={action.busy}
          onClick={toggle}
          aria-label={`${s.paused ? 'Resume' : 'Pause'} ${s.name}`}
        >
          {s.paused ? 'Resume' : 'Pause'}
        </button>
        <Outcome action={action} title="The source could not be changed" where={ADMIN_CALLS} />
      </td>
    </tr>
  );
}

export function SourcesPage(_props: PageProps) {
  const [sources, setSources] = useState<Source[] | undefined>();
  const [error, setError] = useState<unknown>();
  const [now, setNow] = useState(Date.now());
  const load = async () => {
    try {
      setSources((await api<{ sources: Source[] }>('/v1/admin/sources')).sources);
      setNow(Date.now());
      setError(undefined);
    } catch (err) {
      setError(err);
    }
  };
  usePolling(load, REFRESH_MS);

  return (
    <>
      <h1>Sources</h1>
      <p class="hint">
        Tables, APIs and webhooks events are pulled from or pushed by. Create and change them with{' '}
        <code>POST /v1/admin/sources</code> (README: Sources); this page refreshes every {REFRESH_MS / 1000}{' '}
        s.
      </p>
      <div class="toolbar">
        <button type="button" onClick={() => void load()}>
          Refresh
        </button>
      </div>
      <Outcome action={{ result: undefined, error }} title="Sources could not be read" where={ADMIN_CALLS} />
      {sources === undefined ? (
        error === undefined && <p class="empty">Loading…</p>
      ) : sources.length === 0 ? (
        <p class="empty">No source yet.</p>
      ) : (
        <Table
          class="sources"
          columns={[
            'Source',
            'State',
            'Read',
            'Accepted',
            'Duplicates',
            'Rejected',
            'Runs',
            'Last error',
            'Actions',
          ]}
        >
          {sources.map((s) => (
            <SourceRow key={s.id} source={s} now={now} onChanged={() => void load()} />
          ))}
        </Table>
      )}
    </>
  );
}
