import { useState } from 'preact/hooks';
import { ADMIN_CALLS, Outcome, useAction } from './action.tsx';
import { api } from './api.ts';
import { Confirm, useConfirmation } from './confirm.tsx';
import { OVERLAPS } from './keys.ts';
import type { NewKeyShown } from './one-time-key.tsx';
import { formatDuration } from './time.ts';
import { Badge } from './ui.tsx';

/** One key of `GET /v1/admin/keys` (never the secret). */
export interface ApiKey {
  id: string;
  name: string;
  scopes: string[];
  services: string[];
  rateLimitPerMinute: number | null;
  keyPrefix: string;
  createdAt: string;
  revokedAt: string | null;
  expiresAt: string | null;
}
export type Rotated = NewKeyShown & { rotatedFrom: { id: string; expiresAt: string | null } };

function KeyState({ apiKey, now }: { apiKey: ApiKey; now: number }) {
  if (apiKey.revokedAt) {
    return (
      <>
        <Badge tone="bad">revoked</Badge>{' '}
        <span class="hint">{new Date(apiKey.revokedAt).toLocaleString()}</span>
      </>
    );
  }
  if (apiKey.expiresAt) {
    const left = Date.parse(apiKey.expiresAt) - now;
    return left > 0 ? (
      <>
        <Badge tone="warn">rotated</Badge> <span class="hint">stops in {formatDuration(left)}</span>
      </>
    ) : (
      <Badge tone="neutral">expired</Badge>
    );
  }
  return <Badge tone="good">active</Badge>;
}

/** A row of the keys table, with its rotate and revoke confirmations in its last cell. */
export function KeyRow(props: {
  apiKey: ApiKey;
  /** The key this console is signed in with. */
  ownKey: boolean;
  now: number;
  onRotated(r: Rotated): void;
  onRevoked(): void;
}) {
  const k = props.apiKey;
  const rotate = useConfirmation<true>();
  const revoke = useConfirmation<true>();
  const [overlap, setOverlap] = useState(0);
  const action = useAction();
  const usable = !k.revokedAt && !(k.expiresAt && Date.parse(k.expiresAt) <= props.now);

  /** Runs the confirmed call; on success the page moves the focus (to the new key, the list). */
  const act = async (call: () => Promise<void>, close: (refocus: boolean) => void) => {
    const ok = await action.run(async () => {
      await call();
      return undefined;
    });
    close(!ok);
  };
  const doRotate = () =>
    act(async () => {
      const seconds = OVERLAPS[overlap]?.seconds;
      const r = await api<Rotated>(`/v1/admin/keys/${encodeURIComponent(k.id)}/rotate`, {
        method: 'POST',
        ...(seconds === undefined ? {} : { body: { overlapSeconds: seconds } }),
      });
      props.onRotated(r);
    }, rotate.close);
  const doRevoke = () =>
    act(async () => {
      await api<undefined>(`/v1/admin/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
      props.onRevoked();
    }, revoke.close);

  return (
    <tr data-key-id={k.id}>
      <th scope="row">
        {k.name}
        {props.ownKey && <span class="hint"> (this console's key)</span>}
      </th>
      <td>
        <code>{k.keyPrefix}…</code>
      </td>
      <td>{k.scopes.join(', ')}</td>
      <td>{k.services.length ? k.services.join(', ') : <span class="hint">every service</span>}</td>
      <td>
        {k.rateLimitPerMinute === null ? (
          <span class="hint">default</span>
        ) : (
          k.rateLimitPerMinute.toLocaleString('en')
        )}
      </td>
      <td>{new Date(k.createdAt).toLocaleString()}</td>
      <td>
        <KeyState apiKey={k} now={props.now} />
      </td>
      <td class="row-actions">
        {rotate.asking ? (
          <Confirm
            confirmLabel="Rotate"
            busyLabel="Rotating…"
            busy={action.busy}
            onConfirm={doRotate}
            onCancel={rotate.close}
          >
            <p>Rotate “{k.name}”? A new key with the same scopes, services and limit is shown once.</p>
            <label class="overlap">
              The old key keeps working for{' '}
              <select value={overlap} onChange={(e) => setOverlap(Number(e.currentTarget.value))}>
                {OVERLAPS.map((o, i) => (
                  <option key={o.label} value={i}>
                    {o.label}
                  </option>
                ))}
              </select>
            </label>
            {props.ownKey && <p>This console is signed in with it: sign in again with the new key.</p>}
          </Confirm>
        ) : revoke.asking ? (
          <Confirm
            confirmLabel="Revoke"
            busyLabel="Revoking…"
            busy={action.busy}
            onConfirm={doRevoke}
            onCancel={revoke.close}
          >
            <p>
              Revoke “{k.name}”? Every client using it gets 401 at once; this cannot be undone.
              {props.ownKey && ' This console is signed in with it and will be signed out.'}
            </p>
          </Confirm>
        ) : usable ? (
          <div class="actions">
            <button type="button" class="small" ref={rotate.start} onClick={() => rotate.ask(true)}>
              Rotate…<span class="visually-hidden"> {k.name}</span>
            </button>
            <button type="button" class="small" ref={revoke.start} onClick={() => revoke.ask(true)}>
              Revoke…<span class="visually-hidden"> {k.name}</span>
            </button>
          </div>
        ) : null}
        <Outcome action={action} title="Not done" where={ADMIN_CALLS} />
      </td>
    </tr>
  );
}
