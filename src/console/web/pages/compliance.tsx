import '../pages.css';
import { useRef, useState } from 'preact/hooks';
import { ApiError, api } from '../api.ts';
import {
  type ErasureState,
  exportFileName,
  isFinished,
  isRequestId,
  parseRemembered,
  type RememberedRequest,
  remember,
  subjectPath,
  subjectProblem,
} from '../compliance.ts';
import { Confirm, useConfirmation } from '../confirm.tsx';
import { fetchFile, saveFile } from '../download.ts';
import type { PageProps } from '../routes.ts';
import { Badge, ErrorNotice, elsewhereHint, formatBytes, formatCount, type Tone } from '../ui.tsx';
import { useWatch } from '../watch.ts';

// Data-subject requests (§8, §12) for one subject id, a userId or an anonymousId: opt out and
// back in, erasure (confirmed, then followed until it ends, with what it deleted where) and
// export (downloaded with the key in a header). The subject is never put in the address or in
// storage; the erasure request ids are (session storage), so a reload still follows them.

/** `GET /v1/dsar/:requestId`. */
interface ErasureStatus {
  requestId: string;
  userId: string;
  status: ErasureState;
  requestedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  deleted: { database: number; buffer: number; checkpoint: number; archive: number; deadLetter: number };
  archivesRewritten: number;
  error: string | null;
}

interface OptOut {
  userId: string;
  optedOut: boolean;
  since?: string;
}

/** A followed request: as remembered, with its last answer or the error that answered instead. */
interface Followed extends RememberedRequest {
  status?: ErasureStatus;
  error?: unknown;
}

const REQUESTS_ITEM = 'tributary.console.erasures';

const STATUS_TONE: Record<ErasureState, Tone> = {
  pending: 'neutral',
  running: 'warn',
  completed: 'good',
  failed: 'bad',
};

/** Where the deleted events were, in the order an erasure visits them. */
const PLACES: { key: keyof ErasureStatus['deleted']; label: string }[] = [
  { key: 'database', label: 'Database' },
  { key: 'buffer', label: 'Buffer' },
  { key: 'checkpoint', label: 'Disk checkpoint' },
  { key: 'deadLetter', label: 'Dead letters' },
  { key: 'archive', label: 'Archive' },
];

const storeRequests = (list: readonly RememberedRequest[]) =>
  sessionStorage.setItem(
    REQUESTS_ITEM,
    JSON.stringify(list.map(({ requestId, requestedAt }) => ({ requestId, requestedAt }))),
  );

/** Still to be looked at: no answer yet, or one that is not final (a 404 is final). */
const inFlight = (f: Followed) =>
  f.status ? !isFinished(f.status.status) : !(f.error instanceof ApiError && f.error.status === 404);

export function CompliancePage(_props: PageProps) {
  const [subject, setSubject] = useState('');
  const [problem, setProblem] = useState<string | undefined>();
  const [requests, setRequests] = useState<Followed[]>(() =>
    parseRemembered(sessionStorage.getItem(REQUESTS_ITEM)),
  );
  const input = useRef<HTMLInputElement>(null);

  /** The subject to act on, or undefined (and the field says why) when it cannot be. */
  const current = (): string | undefined => {
    const p = subjectProblem(subject);
    setProblem(p);
    if (p) input.current?.focus();
    return p ? undefined : subject;
  };

  const follow = (entry: RememberedRequest) => {
    setRequests((prev) => {
      const list = remember(prev, entry).map((r) => prev.find((p) => p.requestId === r.requestId) ?? r);
      storeRequests(list);
      return list;
    });
  };
  const forget = (requestId: string) => {
    setRequests((prev) => {
      const list = prev.filter((r) => r.requestId !== requestId);
      storeRequests(list);
      return list;
    });
  };

  // One look at every request still in flight; the answers replace the old ones.
  const look = async () => {
    const due = requests.filter(inFlight);
    const answers = await Promise.all(
      due.map((r) =>
        api<ErasureStatus>(`/v1/dsar/${encodeURIComponent(r.requestId)}`).then(
          (status) => ({ requestId: r.requestId, status, error: undefined }),
          (error: unknown) => ({ requestId: r.requestId, status: undefined, error }),
        ),
      ),
    );
    setRequests((prev) =>
      prev.map((r) => {
        const a = answers.find((x) => x.requestId === r.requestId);
        return a ? { requestId: r.requestId, requestedAt: r.requestedAt, ...definedOnly(a) } : r;
      }),
    );
  };
  useWatch(requests.some(inFlight), look);

  return (
    <>
      <h1>Compliance</h1>
      <p class="hint">
        Requests about one data subject. Each is made with your key and written to the audit log; a subject is
        found by <code>userId</code> or <code>anonymousId</code>, with the ids linked to it.
      </p>
      <form class="subject-form" onSubmit={(e) => e.preventDefault()} aria-label="Data subject">
        <label for="subject">Subject id</label>
        <input
          ref={input}
          id="subject"
          name="subject"
          autocomplete="off"
          spellcheck={false}
          value={subject}
          onInput={(e) => {
            setSubject(e.currentTarget.value);
            setProblem(undefined);
          }}
          aria-invalid={problem ? true : undefined}
          aria-describedby="subject-help subject-problem"
        />
        <p id="subject-help" class="hint">
          A <code>userId</code> or an <code>anonymousId</code>, exactly as sent in events. It is not kept
          anywhere by this page.
        </p>
        <p id="subject-problem" class="field-problem" role="alert">
          {problem}
        </p>
      </form>
      <OptOutSection current={current} />
      <ErasureSection
        current={current}
        onRequested={(requestId) => follow({ requestId, requestedAt: new Date().toISOString() })}
      />
      <ExportSection current={current} />
      <RequestsSection
        requests={requests}
        onFollow={(requestId) => follow({ requestId, requestedAt: new Date().toISOString() })}
        onForget={forget}
      />
    </>
  );
}

/** The answer without its undefined fields (they would overwrite nothing anyway). */
function definedOnly(a: { status: ErasureStatus | undefined; error: unknown }): Partial<Followed> {
  return a.status ? { status: a.status } : { error: a.error };
}

interface SubjectActionProps {
  current(): string | undefined;
}

/** A call's outcome as a section shows it: a result line, or the error with where to go instead. */
function Outcome(props: { result: string | undefined; error: unknown; title: string }) {
  const hint = elsewhereHint(props.error, 'compliance calls', 'public');
  return (
    <>
      <div role="status">{props.result && <p class="notice">{props.result}</p>}</div>
      {props.error !== undefined && (
        <ErrorNotice error={props.error} title={props.title}>
          {hint && <p>{hint}</p>}
        </ErrorNotice>
      )}
    </>
  );
}

function OptOutSection({ current }: SubjectActionProps) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();

  const change = async (optOut: boolean) => {
    const subject = current();
    if (subject === undefined) return;
    setBusy(true);
    setResult(undefined);
    setError(undefined);
    try {
      const r = await api<OptOut>(subjectPath(subject, 'opt-out'), { method: optOut ? 'PUT' : 'DELETE' });
      setResult(
        r.optedOut
          ? `${r.userId} is opted out${r.since ? ` since ${new Date(r.since).toLocaleString()}` : ''}: their events are skipped at ingest.`
          : `${r.userId} is opted back in: their events are accepted again.`,
      );
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="optout-heading">
      <h2 id="optout-heading">Opt-out</h2>
      <p class="hint">
        An opted-out subject's events are answered <code>skipped</code> and never stored, from any service.
      </p>
      <div class="actions">
        <button type="button" onClick={() => change(true)} disabled={busy}>
          Opt out
        </button>
        <button type="button" onClick={() => change(false)} disabled={busy}>
          Opt back in
        </button>
      </div>
      <Outcome result={result} error={error} title="Opt-out not changed" />
    </section>
  );
}

function ErasureSection(props: SubjectActionProps & { onRequested(requestId: string): void }) {
  const confirmation = useConfirmation<string>();
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();

  const ask = () => {
    const subject = props.current();
    if (subject === undefined) return;
    setResult(undefined);
    setError(undefined);
    confirmation.ask(subject);
  };
  const erase = async () => {
    const subject = confirmation.asking;
    if (subject === undefined) return;
    setBusy(true);
    try {
      const r = await api<{ requestId: string }>(subjectPath(subject, 'events'), { method: 'DELETE' });
      props.onRequested(r.requestId);
      setResult(`Erasure requested (${r.requestId}); its progress is under Erasure requests below.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
      confirmation.close();
    }
  };

  return (
    <section aria-labelledby="erasure-heading">
      <h2 id="erasure-heading">Erasure</h2>
      <p class="hint">
        Deletes every event of the subject, and of the ids linked to it, in every service: from the database,
        the buffer, the disk checkpoint, the dead letters and the archives.
      </p>
      {confirmation.asking === undefined ? (
        <button type="button" ref={confirmation.start} onClick={ask}>
          Request erasure…
        </button>
      ) : (
        <Confirm
          confirmLabel="Erase"
          busyLabel="Requesting…"
          busy={busy}
          onConfirm={erase}
          onCancel={confirmation.close}
        >
          <p>
            Erase every event of <strong class="subject-name">{confirmation.asking}</strong>? This cannot be
            undone.
          </p>
        </Confirm>
      )}
      <Outcome result={result} error={error} title="Erasure not requested" />
    </section>
  );
}

function ExportSection({ current }: SubjectActionProps) {
  const [progress, setProgress] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();

  const download = async () => {
    const subject = current();
    if (subject === undefined) return;
    setBusy(true);
    setResult(undefined);
    setError(undefined);
    try {
      const file = await fetchFile(subjectPath(subject, 'events/export'), {
        accept: 'application/x-ndjson',
        onProgress: (lines, bytes) => setProgress(`${formatCount(lines)} events, ${formatBytes(bytes)}…`),
      });
      const name = exportFileName(subject, new Date());
      saveFile(file.blob, name);
      setResult(
        `Saved ${name}: ${formatCount(file.lines)} ${file.lines === 1 ? 'event' : 'events'} (${formatBytes(file.bytes)}).`,
      );
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
      setProgress(undefined);
    }
  };

  return (
    <section aria-labelledby="export-heading">
      <h2 id="export-heading">Export</h2>
      <p class="hint">
        Every stored event of the subject, from the database, the dead letters and the archives, one JSON
        object per line (<code>source</code> says where each was found).
      </p>
      <button type="button" onClick={download} disabled={busy}>
        {busy ? 'Downloading…' : 'Download export'}
      </button>
      {progress && <p class="hint">{progress}</p>}
      <Outcome result={result} error={error} title="Export failed" />
    </section>
  );
}

function RequestsSection(props: {
  requests: Followed[];
  onFollow(requestId: string): void;
  onForget(requestId: string): void;
}) {
  const [id, setId] = useState('');
  const [problem, setProblem] = useState<string | undefined>();
  const add = (e: Event) => {
    e.preventDefault();
    const requestId = id.trim();
    if (!isRequestId(requestId)) {
      setProblem('A request id is a UUID, as the erasure request answered.');
      return;
    }
    setProblem(undefined);
    setId('');
    props.onFollow(requestId);
  };

  return (
    <section aria-labelledby="requests-heading">
      <h2 id="requests-heading">Erasure requests</h2>
      <p class="hint">
        Followed until they end; this tab remembers their ids (not their subjects) across a reload.
      </p>
      {props.requests.length === 0 ? (
        <p class="empty">None requested from this tab yet.</p>
      ) : (
        <ul class="requests">
          {props.requests.map((r) => (
            <RequestCard key={r.requestId} request={r} onForget={() => props.onForget(r.requestId)} />
          ))}
        </ul>
      )}
      <form class="inline-form" onSubmit={add} aria-label="Follow a request">
        <label for="follow-id">Follow another request by id</label>
        <input
          id="follow-id"
          value={id}
          autocomplete="off"
          spellcheck={false}
          onInput={(e) => setId(e.currentTarget.value)}
          aria-invalid={problem ? true : undefined}
          aria-describedby="follow-problem"
        />
        <button type="submit">Follow</button>
        <p id="follow-problem" class="field-problem" role="alert">
          {problem}
        </p>
      </form>
    </section>
  );
}

function RequestCard({ request, onForget }: { request: Followed; onForget(): void }) {
  const s = request.status;
  return (
    <li class="request" data-request-id={request.requestId}>
      <div class="request-head">
        <code class="request-id">{request.requestId}</code>
        {s ? (
          <Badge tone={STATUS_TONE[s.status]}>{s.status}</Badge>
        ) : request.error === undefined ? (
          <Badge tone="neutral">checking…</Badge>
        ) : null}
        <button
          type="button"
          class="small"
          onClick={onForget}
          aria-label={`Forget request ${request.requestId}`}
        >
          Forget
        </button>
      </div>
      {s && (
        <>
          <p class="hint">
            Subject <span class="subject-name">{s.userId}</span>, requested{' '}
            {new Date(s.requestedAt).toLocaleString()}
            {s.finishedAt && `, finished ${new Date(s.finishedAt).toLocaleString()}`}.
          </p>
          <dl class="counts" aria-label="Events deleted, by place">
            {PLACES.map((p) => (
              <div key={p.key} class="count">
                <dt>{p.label}</dt>
                <dd data-place={p.key}>{formatCount(s.deleted[p.key])}</dd>
              </div>
            ))}
            <div class="count">
              <dt>Archive objects rewritten</dt>
              <dd data-place="archivesRewritten">{formatCount(s.archivesRewritten)}</dd>
            </div>
          </dl>
          {s.error && <ErrorNotice error={new ApiError('erasure_failed', 0, s.error)} />}
        </>
      )}
      {request.error !== undefined && <ErrorNotice error={request.error} title="Status not read" />}
    </li>
  );
}
