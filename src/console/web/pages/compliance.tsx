import '../pages.css';
import { useRef, useState } from 'preact/hooks';
import { COMPLIANCE_CALLS, Outcome, useAction } from '../action.tsx';
import { ApiError, api } from '../api.ts';
import {
  exportFileName,
  isFinished,
  parseRemembered,
  type RememberedRequest,
  remember,
  subjectPath,
  subjectProblem,
} from '../compliance.ts';
import { Confirm, useConfirmation } from '../confirm.tsx';
import { fetchFile, saveFile } from '../download.ts';
import { type ErasureStatus, type Followed, RequestsSection } from '../erasure-requests.tsx';
import type { PageProps } from '../routes.ts';
import { formatBytes, formatCount, Section } from '../ui.tsx';
import { useWatch } from '../watch.ts';

// Data-subject requests (§8, §12) for one subject id, a userId or an anonymousId: opt out and
// back in, erasure (confirmed, then followed until it ends, with what it deleted where) and
// export (downloaded with the key in a header). The subject is never put in the address or in
// storage; the erasure request ids are (session storage), so a reload still follows them.

interface OptOut {
  userId: string;
  optedOut: boolean;
  since?: string;
}

const REQUESTS_ITEM = 'tributary.console.erasures';

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
      <p class="hint lead">
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

function OptOutSection({ current }: SubjectActionProps) {
  const action = useAction();
  const change = (optOut: boolean) => {
    const subject = current();
    if (subject === undefined) return;
    void action.run(async () => {
      const r = await api<OptOut>(subjectPath(subject, 'opt-out'), { method: optOut ? 'PUT' : 'DELETE' });
      return r.optedOut
        ? `${r.userId} is opted out${r.since ? ` since ${new Date(r.since).toLocaleString()}` : ''}: their events are skipped at ingest.`
        : `${r.userId} is opted back in: their events are accepted again.`;
    });
  };

  return (
    <Section id="optout" title="Opt-out">
      <p class="hint lead">
        An opted-out subject's events are answered <code>skipped</code> and never stored, from any service.
      </p>
      <div class="actions">
        <button type="button" onClick={() => change(true)} disabled={action.busy}>
          Opt out
        </button>
        <button type="button" onClick={() => change(false)} disabled={action.busy}>
          Opt back in
        </button>
      </div>
      <Outcome action={action} title="Opt-out not changed" where={COMPLIANCE_CALLS} />
    </Section>
  );
}

function ErasureSection(props: SubjectActionProps & { onRequested(requestId: string): void }) {
  const confirmation = useConfirmation<string>();
  const action = useAction();

  const ask = () => {
    const subject = props.current();
    if (subject === undefined) return;
    action.reset();
    confirmation.ask(subject);
  };
  const erase = async () => {
    const subject = confirmation.asking;
    if (subject === undefined) return;
    await action.run(async () => {
      const r = await api<{ requestId: string }>(subjectPath(subject, 'events'), { method: 'DELETE' });
      props.onRequested(r.requestId);
      return `Erasure requested (${r.requestId}); its progress is under Erasure requests below.`;
    });
    confirmation.close();
  };

  return (
    <Section id="erasure" title="Erasure">
      <p class="hint lead">
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
          busy={action.busy}
          onConfirm={erase}
          onCancel={confirmation.close}
        >
          <p>
            Erase every event of <strong class="subject-name">{confirmation.asking}</strong>? This cannot be
            undone.
          </p>
        </Confirm>
      )}
      <Outcome action={action} title="Erasure not requested" where={COMPLIANCE_CALLS} />
    </Section>
  );
}

function ExportSection({ current }: SubjectActionProps) {
  const [progress, setProgress] = useState<string | undefined>();
  const action = useAction();

  const download = async () => {
    const subject = current();
    if (subject === undefined) return;
    await action.run(async () => {
      const file = await fetchFile(subjectPath(subject, 'events/export'), {
        accept: 'application/x-ndjson',
        onProgress: (lines, bytes) => setProgress(`${formatCount(lines)} events, ${formatBytes(bytes)}…`),
      });
      const name = exportFileName(subject, new Date());
      saveFile(file.blob, name);
      return `Saved ${name}: ${formatCount(file.lines)} ${file.lines === 1 ? 'event' : 'events'} (${formatBytes(file.bytes)}).`;
    });
    setProgress(undefined);
  };

  return (
    <Section id="export" title="Export">
      <p class="hint lead">
        Every stored event of the subject, from the database, the dead letters and the archives, one JSON
        object per line (<code>source</code> says where each was found).
      </p>
      <button type="button" onClick={download} disabled={action.busy}>
        {action.busy ? 'Downloading…' : 'Download export'}
      </button>
      {progress && <p class="hint">{progress}</p>}
      <Outcome action={action} title="Export failed" where={COMPLIANCE_CALLS} />
    </Section>
  );
}
