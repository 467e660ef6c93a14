import { useEffect, useState } from 'preact/hooks';
import { api } from './api.ts';
import { Badge, ErrorNotice, formatBytes, formatCount, Section, Table, type Tone } from './ui.tsx';

// The archives table of the retention page: `GET /v1/admin/archives`, filtered by month,
// service and status, a page at a time (keyset cursor).

/** One archive object (`Archive` in the API's document), as far as the table shows it. */
interface Archive {
  id: string;
  runId: string | null;
  month: string;
  service: string;
  source: string;
  objectKey: string;
  status: 'writing' | 'verified' | 'complete' | 'restored';
  rowCount: number | null;
  bytes: number | null;
  sha256: string | null;
  createdAt: string;
  holdUntil: string | null;
}
interface ArchivePage {
  location: string;
  archives: Archive[];
  nextCursor: string | null;
}

const STATUSES = ['writing', 'verified', 'complete', 'restored'] as const;
const STATUS_TONE: Record<Archive['status'], Tone> = {
  writing: 'warn',
  verified: 'neutral',
  complete: 'good',
  restored: 'warn',
};
const PAGE = 50;

/** The filters as the API's query; empty ones left out. */
function archiveQuery(filters: URLSearchParams, cursor?: string): string {
  const q = new URLSearchParams({ limit: String(PAGE) });
  for (const name of ['month', 'service', 'status']) {
    const v = filters.get(name)?.trim();
    if (v) q.set(name, v);
  }
  if (cursor) q.set('cursor', cursor);
  return q.toString();
}

/** `version`: the page bumps it when a pass ends, to list what it wrote. */
export function ArchivesSection({ version }: { version: number }) {
  const [filters, setFilters] = useState(() => new URLSearchParams());
  const [page, setPage] = useState<ArchivePage | undefined>();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  const load = async (cursor?: string) => {
    setBusy(true);
    try {
      const next = await api<ArchivePage>(`/v1/admin/archives?${archiveQuery(filters, cursor)}`);
      setPage((prev) =>
        cursor && prev ? { ...next, archives: [...prev.archives, ...next.archives] } : next,
      );
      setError(undefined);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    void load();
  }, [version, filters.toString()]);

  const apply = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const next = new URLSearchParams();
    for (const [k, v] of form) if (typeof v === 'string' && v.trim()) next.set(k, v.trim());
    setFilters(next);
  };

  return (
    <Section id="archives" title="Archives">
      <form class="filters archive-filters" onSubmit={apply} aria-label="Archive filters">
        <label>
          Month
          <input
            name="month"
            placeholder="YYYY-MM"
            pattern="\d{4}-\d{2}"
            defaultValue={filters.get('month') ?? ''}
          />
        </label>
        <label>
          Service
          <input name="service" placeholder="any" defaultValue={filters.get('service') ?? ''} />
        </label>
        <label>
          Status
          <select name="status" defaultValue={filters.get('status') ?? ''}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <div class="filter-actions">
          <button type="submit" class="primary">
            Apply filters
          </button>
          <button type="button" onClick={() => void load()} disabled={busy}>
            Refresh
          </button>
        </div>
      </form>
      {error !== undefined && <ErrorNotice error={error} title="Archives could not be read" />}
      {page && (
        <>
          <p class="hint lead">
            Stored in <code>{page.location}</code>; newest first.
          </p>
          {page.archives.length === 0 ? (
            <p class="empty">No archive{filters.toString() ? ' matches these filters' : ' yet'}.</p>
          ) : (
            <ArchiveTable archives={page.archives} />
          )}
          {page.nextCursor && (
            <button type="button" onClick={() => void load(page.nextCursor ?? undefined)} disabled={busy}>
              {busy ? 'Loading…' : 'Load more'}
            </button>
          )}
        </>
      )}
    </Section>
  );
}

function ArchiveTable({ archives }: { archives: Archive[] }) {
  return (
    <Table
      class="archives"
      columns={['Month', 'Service', 'Status', 'Rows', 'Bytes', 'SHA-256', 'Object', 'Archived']}
    >
      {archives.map((a) => (
        <tr key={a.id} data-archive-id={a.id}>
          <th scope="row">{a.month}</th>
          <td>{a.service}</td>
          <td>
            <Badge tone={STATUS_TONE[a.status]}>{a.status}</Badge>
            {a.holdUntil && <span class="hint"> held until {new Date(a.holdUntil).toLocaleString()}</span>}
          </td>
          <td data-col="rows">{a.rowCount === null ? '—' : formatCount(a.rowCount)}</td>
          <td>{a.bytes === null ? '—' : formatBytes(a.bytes)}</td>
          <td>
            <code class="hash">{a.sha256 ?? '—'}</code>
          </td>
          <td>
            <code class="object-key">{a.objectKey}</code>
          </td>
          <td>{new Date(a.createdAt).toLocaleString()}</td>
        </tr>
      ))}
    </Table>
  );
}
