import { useState } from 'preact/hooks';
import { ApiError } from './api.ts';
import { type ErasureState, isRequestId, type RememberedRequest } from './compliance.ts';
import { Badge, ErrorNotice, formatCount, Section, type Tone } from './ui.tsx';

// The compliance page's erasure requests: each followed one with its state and what it
// deleted where, and a field to follow another by its id.

/** `GET /v1/dsar/:requestId`. */
export interface ErasureStatus {
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

/** A followed request: as remembered, with its last answer or the error that answered instead. */
export interface Followed extends RememberedRequest {
  status?: ErasureStatus;
  error?: unknown;
}

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

export function RequestsSection(props: {
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
    <Section id="requests" title="Erasure requests">
      <p class="hint lead">
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
    </Section>
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
