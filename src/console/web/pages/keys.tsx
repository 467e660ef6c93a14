import '../pages.css';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ADMIN_CALLS, Outcome } from '../action.tsx';
import { api } from '../api.ts';
import { KeyForm } from '../key-form.tsx';
import { type ApiKey, KeyRow, type Rotated } from '../key-row.tsx';
import { type NewKeyShown, OneTimeKey } from '../one-time-key.tsx';
import type { PageProps } from '../routes.ts';
import { Table } from '../ui.tsx';

// API keys (admin): the list (`GET /v1/admin/keys`, never the secrets), create
// (`POST /v1/admin/keys`), rotate (`POST …/:id/rotate`) and revoke (`DELETE …/:id`). A new
// key is shown once, in memory only: it is never stored, and gone when dismissed or the page
// is left.

export function KeysPage({ who, params, setParams }: PageProps) {
  const [keys, setKeys] = useState<ApiKey[] | undefined>();
  const [error, setError] = useState<unknown>();
  const [shown, setShown] = useState<NewKeyShown | undefined>();
  const listHeading = useRef<HTMLHeadingElement>(null);
  const showAll = params.get('all') === '1';

  const load = async () => {
    try {
      setKeys((await api<{ keys: ApiKey[] }>('/v1/admin/keys')).keys);
      setError(undefined);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    void load();
  }, []);

  const onCreated = (key: NewKeyShown) => {
    setShown(key);
    void load();
  };
  const onRotated = (r: Rotated) => {
    setShown(r);
    void load();
  };
  const onRevoked = () => {
    void load();
    listHeading.current?.focus();
  };
  const toggleAll = () => {
    const next = new URLSearchParams(params);
    if (showAll) next.delete('all');
    else next.set('all', '1');
    setParams(next);
  };

  const now = Date.now();
  const active = (k: ApiKey) => !k.revokedAt && !(k.expiresAt && Date.parse(k.expiresAt) <= now);
  const listed = (keys ?? []).filter((k) => showAll || active(k));

  return (
    <>
      <h1>Keys</h1>
      {shown && <OneTimeKey shown={shown} onDone={() => setShown(undefined)} />}
      <KeyForm onCreated={onCreated} />
      <section aria-labelledby="keys-heading">
        <h2 id="keys-heading" ref={listHeading} tabindex={-1}>
          Keys
        </h2>
        <div class="toolbar">
          <label class="check">
            <input type="checkbox" checked={showAll} onChange={toggleAll} /> Show revoked and expired keys
          </label>
          <button type="button" onClick={() => void load()}>
            Refresh
          </button>
        </div>
        <Outcome action={{ result: undefined, error }} title="Keys could not be read" where={ADMIN_CALLS} />
        {keys === undefined ? (
          error === undefined && <p class="empty">Loading…</p>
        ) : listed.length === 0 ? (
          <p class="empty">
            {keys.length === 0
              ? 'No key has been created yet (ADMIN_API_KEY, the bootstrap key, is not listed).'
              : 'No active key.'}
          </p>
        ) : (
          <Table
            class="keys"
            columns={[
              'Name',
              'Key starts',
              'Scopes',
              'Services',
              'Limit per minute',
              'Created',
              'State',
              'Actions',
            ]}
          >
            {listed.map((k) => (
              <KeyRow
                key={k.id}
                apiKey={k}
                ownKey={k.id === who.keyId}
                now={now}
                onRotated={onRotated}
                onRevoked={onRevoked}
              />
            ))}
          </Table>
        )}
      </section>
    </>
  );
}
