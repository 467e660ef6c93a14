import '../pages.css';
import { useState } from 'preact/hooks';
import { ADMIN_CALLS, Outcome, useAction } from '../action.tsx';
import { api } from '../api.ts';
import { Confirm, useConfirmation } from '../confirm.tsx';
import type { PageProps } from '../routes.ts';
import { formatDuration } from '../time.ts';
import { Badge, formatAgo, formatCount, Table, type Tone, usePolling } from '../ui.tsx';

// Materializations (admin, ARCHITECTURE §17): every materialisation with its state
// (`GET /v1/admin/materializations`): where its tables are, which work process runs it, how far
// behind the events it is, rows per table, its typed columns and the values that did not fit
// them; a rebuild button per materialisation (`POST /v1/admin/materializations/:name/rebuild`).

type ColumnType = 'boolean' | 'bigint' | 'double' | 'text';

/** A typed column of the catalog. */
export interface MaterializedColumn {
  table: string;
  column: string;
  path: string[];
  type: ColumnType;
  wanted: ColumnType;
  conflicts: number;
  conflictSample: string | null;
}

/** One materialisation of `GET /v1/admin/materializations`. */
export interface Materialization {
  name: string;
  spec: {
    destination?: { kind: string; schema?: string; path?: string; prefix?: string; connection?: string };
    services?: string[];
  } & Record<string, unknown>;
  state: 'building' | 'running' | 'failed';
  position: { xid: string; seq: number } | null;
  /** `staleDays`: days of daily_counts touched and not recounted yet. */
  lag: { pending: number; seconds: number; staleDays: number; unsynced?: number };
  eventsApplied: number;
  appliedUntil: string | null;
  lastBatchAt: string | null;
  lastRebuildAt: string | null;
  rebuildRequestedAt: string | null;
  lastError: string | null;
  lastErrorAt: string | null;
  failures: number;
  runningOn: string | null;
  tables: Record<string, number>;
  eventTables: Record<string, string>;
  columns: MaterializedColumn[];
  createdAt: string;
  updatedAt: string;
}

const REFRESH_MS = 5_000;
/** What the empty page shows: how to create one (README: Materialisations). */
const CREATE_EXAMPLE = `PUT /v1/admin/materializations/warehouse
content-type: application/json

{"destination":{"kind":"postgres","schema":"mat"}}`;
/** The API counts pending events up to this many. */
const PENDING_CAP = 1_000_000;

/** The tables every materialisation has, in the order the README lists them; the rest are event tables. */
export const FIXED_TABLES = [
  'tracks',
  'pages',
  'screens',
  'identifies',
  'groups',
  'aliases',
  'users',
  'accounts',
  'identity_links',
  'daily_counts',
] as const;
const FIXED = new Set<string>(FIXED_TABLES);

/** The state in a word or two: running, building, failed (with its failures in a row). */
export function materializationStatus(m: Materialization): { label: string; tone: Tone } {
  if (m.state === 'failed') return { label: `failed (${m.failures} in a row)`, tone: 'bad' };
  if (m.state === 'building') return { label: 'building', tone: 'neutral' };
  return { label: 'running', tone: 'good' };
}

/** Where its tables are: `postgres · schema mat`. */
function destinationOf(m: Materialization): string {
  const d = m.spec.destination;
  if (!d) return '';
  if (d.kind === 'postgres')
    return `postgres · ${'connection' in d ? 'another database, ' : ''}schema ${d.schema ?? 'mat'}`;
  return `${d.kind} · ${d.path ?? d.prefix ?? ''}`;
}

/** The total of the conflicts of every column. */
export const conflictsOf = (m: Materialization): number => m.columns.reduce((sum, c) => sum + c.conflicts, 0);

/** A time as "4 s ago", with the exact instant in `datetime` (and as a tooltip). */
function Ago(props: { iso: string | null; now: number }) {
  if (!props.iso) return <span class="hint">never</span>;
  return (
    <time dateTime={props.iso} title={new Date(props.iso).toLocaleString()}>
      {formatAgo(props.iso, props.now)}
    </time>
  );
}

/** Rows per table: the fixed tables by name, then the event tables in one line. */
function RowsPerTable(props: { tables: Record<string, number>; staleDays: number }) {
  const events = Object.entries(props.tables).filter(([t]) => !FIXED.has(t));
  const eventRows = events.reduce((sum, [, n]) => sum + n, 0);
  return (
    <>
      <dl class="mat-rows">
        {FIXED_TABLES.map((t) => (
          <div key={t} data-table={t}>
            <dt>{t}</dt>
            <dd>{props.tables[t] === undefined ? '—' : formatCount(props.tables[t])}</dd>
          </div>
        ))}
      </dl>
      {props.staleDays > 0 && (
        <div class="hint" data-field="stale-days">
          daily_counts: {props.staleDays === 1 ? '1 day' : `${formatCount(props.staleDays)} days`} to recount
        </div>
      )}
      <div data-field="event-tables" title={events.map(([t]) => t).join(', ')}>
        {events.length === 1 ? '1 event table' : `${formatCount(events.length)} event tables`}
        {events.length > 0 && <span class="hint"> ({formatCount(eventRows)} rows)</span>}
      </div>
    </>
  );
}

/** The typed columns, the conflicts, and which columns had them. */
function Columns(props: { columns: MaterializedColumn[] }) {
  const conflicting = props.columns.filter((c) => c.conflicts > 0);
  const total = conflicting.reduce((sum, c) => sum + c.conflicts, 0);
  return (
    <>
      <div data-field="columns">{formatCount(props.columns.length)} typed</div>
      <div data-field="conflicts" class={total > 0 ? 'mat-conflicts' : 'hint'}>
        {total === 1 ? '1 conflict' : `${formatCount(total)} conflicts`}
      </div>
      {conflicting.length > 0 && (
        <details data-field="conflicting-columns" class="mat-conflict-list">
          <summary>
            in {conflicting.length === 1 ? '1 column' : `${formatCount(conflicting.length)} columns`}
          </summary>
          <ul>
            {conflicting.map((c) => (
              <li key={`${c.table}.${c.column}`} data-column={`${c.table}.${c.column}`}>
                <code>
                  {c.table}.{c.column}
                </code>{' '}
                {c.type === c.wanted ? c.type : `${c.type} → ${c.wanted}`},{' '}
                {c.conflicts === 1 ? '1 value' : `${formatCount(c.conflicts)} values`}
                {c.conflictSample && (
                  <div class="hint">
                    e.g. event <code class="mat-sample">{c.conflictSample}</code>
                  </div>
                )}
              </li>
            ))}
          </ul>
        </details>
      )}
    </>
  );
}

function MaterializationRow(props: { materialization: Materialization; now: number; onChanged(): void }) {
  const m = props.materialization;
  const action = useAction();
  const confirm = useConfirmation<true>();
  const status = materializationStatus(m);
  const schema = m.spec.destination?.kind === 'postgres' ? (m.spec.destination.schema ?? 'mat') : undefined;
  // Asked or not, focus goes back to the Rebuild button (the outcome is announced beside it).
  const rebuild = async () => {
    await action.run(async () => {
      await api<Materialization>(`/v1/admin/materializations/${encodeURIComponent(m.name)}/rebuild`, {
        method: 'POST',
      });
      props.onChanged();
      return `Rebuild of ${m.name} requested: a work process builds every table again and swaps them in when done.`;
    });
    confirm.close();
  };
  const lag = m.lag;
  return (
    <tr data-materialization={m.name}>
      <th scope="row">
        {m.name}
        <div class="hint" data-field="destination">
          {destinationOf(m)}
        </div>
        {m.spec.services && <div class="hint">services {m.spec.services.join(', ')}</div>}
      </th>
      <td data-field="state">
        <Badge tone={status.tone}>{status.label}</Badge>
        {m.runningOn && <div class="hint">on {m.runningOn}</div>}
        {m.rebuildRequestedAt && (
          <div class="hint" data-field="rebuild-requested">
            rebuild requested <Ago iso={m.rebuildRequestedAt} now={props.now} />
          </div>
        )}
        {m.lastError && (
          <p data-field="error" class={m.failures > 0 ? 'error-text' : 'hint'}>
            {m.failures > 0 ? '' : 'recovered: '}
            {m.lastError}
            {m.lastErrorAt && <span class="hint"> ({formatAgo(m.lastErrorAt, props.now)})</span>}
          </p>
        )}
      </td>
      <td class="num" data-field="lag">
        {lag.pending === 0 ? (
          <span class="hint">caught up</span>
        ) : (
          <>
            {formatCount(lag.pending)}
            {lag.pending >= PENDING_CAP ? '+' : ''} events
            <div class="hint">oldest {formatDuration(lag.seconds * 1000)}</div>
          </>
        )}
        {(lag.unsynced ?? 0) > 0 && (
          <div class="hint" data-field="unsynced">
            {formatCount(lag.unsynced ?? 0)} changes to sync to the destination
          </div>
        )}
      </td>
      <td class="num">
        <div data-field="applied">{formatCount(m.eventsApplied)}</div>
        {m.appliedUntil && (
          <div class="hint">
            newest <Ago iso={m.appliedUntil} now={props.now} />
          </div>
        )}
      </td>
      <td class="mat-nowrap">
        <div data-field="last-batch">
          batch <Ago iso={m.lastBatchAt} now={props.now} />
        </div>
        <div data-field="last-rebuild">
          rebuild <Ago iso={m.lastRebuildAt} now={props.now} />
        </div>
      </td>
      <td data-field="tables">
        <RowsPerTable tables={m.tables} staleDays={m.lag.staleDays} />
      </td>
      <td>
        <Columns columns={m.columns} />
      </td>
      <td class="row-actions">
        {confirm.asking ? (
          <Confirm
            confirmLabel="Rebuild"
            busyLabel="Asking…"
            busy={action.busy}
            onConfirm={() => void rebuild()}
            onCancel={() => confirm.close()}
          >
            <p>
              Rebuild “{m.name}” from the stored events? Its tables are built again
              {schema ? ` in ${schema}__rebuild` : ''} and swapped in when done. Months already archived are
              not read back.
            </p>
          </Confirm>
        ) : (
          <button type="button" class="small" ref={confirm.start} onClick={() => confirm.ask(true)}>
            Rebuild…<span class="visually-hidden"> {m.name}</span>
          </button>
        )}
        <Outcome action={action} title="The rebuild was not requested" where={ADMIN_CALLS} />
      </td>
    </tr>
  );
}

export function MaterializationsPage(_props: PageProps) {
  const [list, setList] = useState<Materialization[] | undefined>();
  const [error, setError] = useState<unknown>();
  const [now, setNow] = useState(Date.now());
  const load = async () => {
    try {
      setList(
        (await api<{ materializations: Materialization[] }>('/v1/admin/materializations')).materializations,
      );
      setNow(Date.now());
      setError(undefined);
    } catch (err) {
      setError(err);
    }
  };
  usePolling(load, REFRESH_MS);

  return (
    <>
      <h1>Materializations</h1>
      <p class="hint">
        Typed warehouse tables kept in step with the events (README: Materialisations). Rows per table are
        PostgreSQL's statistics, so approximate; this page refreshes every {REFRESH_MS / 1000} s.
      </p>
      <div class="toolbar">
        <button type="button" onClick={() => void load()}>
          Refresh
        </button>
      </div>
      <Outcome
        action={{ result: undefined, error }}
        title="Materializations could not be read"
        where={ADMIN_CALLS}
      />
      {list === undefined ? (
        error === undefined && <p class="empty">Loading…</p>
      ) : list.length === 0 ? (
        <div class="empty" data-field="empty">
          <p>No materialization yet. Create one with an admin key:</p>
          <pre class="json">{CREATE_EXAMPLE}</pre>
          <p>A work process builds its tables from the stored events, then keeps them up to date.</p>
        </div>
      ) : (
        <Table
          class="materializations"
          columns={[
            'Materialization',
            'State',
            'Lag',
            'Events applied',
            'Last batch, rebuild',
            'Rows (approx.)',
            'Columns',
            'Actions',
          ]}
        >
          {list.map((m) => (
            <MaterializationRow key={m.name} materialization={m} now={now} onChanged={() => void load()} />
          ))}
        </Table>
      )}
    </>
  );
}
