import { useRef, useState } from 'preact/hooks';
import { ADMIN_CALLS, Outcome, useAction } from './action.tsx';
import { api } from './api.ts';
import { type FieldProblem, type KeyFormInput, readKeyForm, SCOPES } from './keys.ts';
import type { NewKeyShown } from './one-time-key.tsx';
import { Section } from './ui.tsx';

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
  const action = useAction();
  const formRef = useRef<HTMLFormElement>(null);

  const set = (field: keyof KeyFormInput, value: string | string[]) => {
    setForm((f) => ({ ...f, [field]: value }));
    setProblems((p) => p.filter((x) => x.field !== field));
  };
  const toggleScope = (scope: string, on: boolean) =>
    set('scopes', on ? [...form.scopes, scope] : form.scopes.filter((s) => s !== scope));
  const problemOf = (field: keyof KeyFormInput) => problems.find((p) => p.field === field)?.message;
  const fieldState = (field: TextKey) => ({
    value: form[field],
    problem: problemOf(field),
    onValue: (value: string) => set(field, value),
  });

  const submit = async (e: Event) => {
    e.preventDefault();
    action.reset();
    const read = readKeyForm(form);
    if (!read.ok) {
      setProblems(read.problems);
      // The first field to fix gets focus (scopes: its first box).
      formRef.current?.querySelector<HTMLElement>(`[data-field="${read.problems[0]?.field}"]`)?.focus();
      return;
    }
    const created = await action.run(async () => {
      onCreated(await api<NewKeyShown>('/v1/admin/keys', { body: read.request }));
      return undefined;
    });
    if (created) setForm(EMPTY);
  };

  return (
    <Section id="create" title="Create a key">
      <form class="key-form" ref={formRef} onSubmit={submit} novalidate aria-labelledby="create-heading">
        <TextField
          id="key-name"
          field="name"
          label="Name"
          help="Who or what uses it, e.g. web-shop backend."
          {...fieldState('name')}
          maxLength={128}
        />
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
        <TextField
          id="key-services"
          field="services"
          label="Services"
          help="The services it may write and read, separated by commas or spaces. Empty: every service — keep that for operators' keys."
          {...fieldState('services')}
          placeholder="every service"
        />
        {/* Text, not type=number: a number field reads "12x" as empty, which would mean no limit. */}
        <TextField
          id="key-rate"
          field="rateLimitPerMinute"
          label="Rate limit (events per minute)"
          help="A batch of 100 spends 100. Empty: the server's DEFAULT_KEY_RATE_LIMIT (none when unset)."
          {...fieldState('rateLimitPerMinute')}
          inputMode="numeric"
        />
        <div>
          <button type="submit" class="primary" disabled={action.busy}>
            {action.busy ? 'Creating…' : 'Create key'}
          </button>
        </div>
      </form>
      <Outcome action={action} title="Key not created" where={ADMIN_CALLS} />
    </Section>
  );
}

type TextKey = 'name' | 'services' | 'rateLimitPerMinute';

/** A labelled text field with its help and its problem (announced), both tied to it for screen readers. */
function TextField(props: {
  id: string;
  field: TextKey;
  label: string;
  help: string;
  value: string;
  problem: string | undefined;
  onValue(value: string): void;
  maxLength?: number;
  placeholder?: string;
  inputMode?: 'numeric';
}) {
  const { id, field, problem } = props;
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <input
        id={id}
        data-field={field}
        value={props.value}
        autocomplete="off"
        spellcheck={false}
        maxLength={props.maxLength}
        placeholder={props.placeholder}
        inputMode={props.inputMode}
        onInput={(e) => props.onValue(e.currentTarget.value)}
        aria-invalid={problem ? true : undefined}
        aria-describedby={`${id}-help ${id}-problem`}
      />
      <p id={`${id}-help`} class="hint">
        {props.help}
      </p>
      <p id={`${id}-problem`} class="field-problem" role="alert">
        {problem}
      </p>
    </div>
  );
}
