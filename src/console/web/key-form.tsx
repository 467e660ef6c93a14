import type { ComponentChildren } from 'preact';
import { useRef, useState } from 'preact/hooks';
import { api } from './api.ts';
import { type FieldProblem, type KeyFormInput, readKeyForm, SCOPES } from './keys.ts';
import type { NewKeyShown } from './one-time-key.tsx';
import { ErrorNotice, elsewhereHint } from './ui.tsx';

const SCOPE_HELP: Record<(typeof SCOPES)[number], string> = {
  ingest: 'send events',
  read: 'query events, the live view, health',
  dsar: 'opt-out, erasure, export',
  admin: 'keys, retention, audit log, dead letters',
};

const EMPTY: KeyFormInput = { name: '', scopes: [], services: '', rateLimitPerMinute: '' };

/** The create form: name, scopes, services and rate limit, checked here and then by the API. */
export function KeyForm({ onCreated }: { onCreated(key: NewKeyShown): void }) {
  const [form, setForm] = useState<KeyFormInput>(EMPTY);
  const [problems, setProblems] = useState<FieldProblem[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const formRef = useRef<HTMLFormElement>(null);

  const set = (field: keyof KeyFormInput, value: string | string[]) => {
    setForm((f) => ({ ...f, [field]: value }));
    setProblems((p) => p.filter((x) => x.field !== field));
  };
  const toggleScope = (scope: string, on: boolean) =>
    set('scopes', on ? [...form.scopes, scope] : form.scopes.filter((s) => s !== scope));
  const problemOf = (field: keyof KeyFormInput) => problems.find((p) => p.field === field)?.message;

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    const read = readKeyForm(form);
    if (!read.ok) {
      setProblems(read.problems);
      // The first field to fix gets focus (scopes: its first box).
      formRef.current?.querySelector<HTMLElement>(`[data-field="${read.problems[0]?.field}"]`)?.focus();
      return;
    }
    setBusy(true);
    try {
      onCreated(await api<NewKeyShown>('/v1/admin/keys', { body: read.request }));
      setForm(EMPTY);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const hint = elsewhereHint(error, 'admin calls', 'admin');
  return (
    <section aria-labelledby="create-heading">
      <h2 id="create-heading">Create a key</h2>
      <form class="key-form" ref={formRef} onSubmit={submit} novalidate aria-labelledby="create-heading">
        <Field
          id="key-name"
          label="Name"
          problem={problemOf('name')}
          help="Who or what uses it, e.g. web-shop backend."
        >
          <input
            id="key-name"
            data-field="name"
            value={form.name}
            maxLength={128}
            autocomplete="off"
            onInput={(e) => set('name', e.currentTarget.value)}
            aria-invalid={problemOf('name') ? true : undefined}
            aria-describedby="key-name-help key-name-problem"
          />
        </Field>
        <fieldset class="scopes" aria-describedby="scopes-problem">
          <legend>Scopes</legend>
          {SCOPES.map((s, i) => (
            <label key={s} class="check">
              <input
                type="checkbox"
                name="scopes"
                value={s}
                data-field={i === 0 ? 'scopes' : undefined}
                checked={form.scopes.includes(s)}
                onChange={(e) => toggleScope(s, e.currentTarget.checked)}
              />
              <span>
                <strong>{s}</strong> <span class="hint">{SCOPE_HELP[s]}</span>
              </span>
            </label>
          ))}
          <p id="scopes-problem" class="field-problem" role="alert">
            {problemOf('scopes')}
          </p>
        </fieldset>
        <Field
          id="key-services"
          label="Services"
          problem={problemOf('services')}
          help="The services it may write and read, separated by commas or spaces. Empty: every service — keep that for operators' keys."
        >
          <input
            id="key-services"
            data-field="services"
            value={form.services}
            autocomplete="off"
            spellcheck={false}
            placeholder="every service"
            onInput={(e) => set('services', e.currentTarget.value)}
            aria-invalid={problemOf('services') ? true : undefined}
            aria-describedby="key-services-help key-services-problem"
          />
        </Field>
        <Field
          id="key-rate"
          label="Rate limit (events per minute)"
          problem={problemOf('rateLimitPerMinute')}
          help="A batch of 100 spends 100. Empty: the server's DEFAULT_KEY_RATE_LIMIT (none when unset)."
        >
          <input
            id="key-rate"
            data-field="rateLimitPerMinute"
            // Text, not type=number: a number field reads "12x" as empty, which would mean no limit.
            inputMode="numeric"
            autocomplete="off"
            value={form.rateLimitPerMinute}
            onInput={(e) => set('rateLimitPerMinute', e.currentTarget.value)}
            aria-invalid={problemOf('rateLimitPerMinute') ? true : undefined}
            aria-describedby="key-rate-help key-rate-problem"
          />
        </Field>
        <div>
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create key'}
          </button>
        </div>
      </form>
      {error !== undefined && (
        <ErrorNotice error={error} title="Key not created">
          {hint && <p>{hint}</p>}
        </ErrorNotice>
      )}
    </section>
  );
}

function Field(props: {
  id: string;
  label: string;
  help: string;
  problem: string | undefined;
  children: ComponentChildren;
}) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      {props.children}
      <p id={`${props.id}-help`} class="hint">
        {props.help}
      </p>
      <p id={`${props.id}-problem`} class="field-problem" role="alert">
        {props.problem}
      </p>
    </div>
  );
}
