import '../pages.css';
import { useEffect, useRef, useState } from 'preact/hooks';
import { Outcome, useAction } from '../action.tsx';
import { api, hasAnyScope } from '../api.ts';
import { Confirm, useConfirmation } from '../confirm.tsx';
import {
  type DryRunAnswer,
  type PlanType,
  parseJsonObject,
  type ServicePlan,
  type StoredSchema,
  verdictOf,
} from '../plans.ts';
import type { PageProps } from '../routes.ts';
import { ErrorNotice, formatTime, Section, Table } from '../ui.tsx';

// Tracking plans (ARCHITECTURE §14): every service's mode and registered types
// (`GET /v1/schemas`); a type's schema and versions; with `admin`, a service's settings, a
// schema written or removed; with `ingest`, an event tried against the plan through the dry
// run (`POST /v1/events/validate`), which stores nothing. The selection is in the address.

const PLAN_CALLS = { what: 'tracking-plan calls', port: 'public' } as const;
const MODES = ['off', 'warn', 'reject'] as const;
const UNKNOWN = ['allow', 'warn', 'reject'] as const;
const schemaPath = (service: string, type: string) =>
  `/v1/schemas/${encodeURIComponent(service)}/${encodeURIComponent(type)}`;

export function PlansPage({ who, params, setParams }: PageProps) {
  const [plans, setPlans] = useState<ServicePlan[] | undefined>();
  const [error, setError] = useState<unknown>();
  const service = params.get('service') ?? '';
  const type = params.get('type') ?? '';
  const admin = who.scopes.includes('admin');

  // Bumped by a save or a refresh: the schema shown is read again even when the selection stays.
  const [revision, setRevision] = useState(0);
  const load = async () => {
    setRevision((r) => r + 1);
    try {
      setPlans((await api<{ services: ServicePlan[] }>('/v1/schemas')).services);
      setError(undefined);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    void load();
  }, []);
  const select = (next: { service?: string; type?: string; version?: string }) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(next)) if (v) p.set(k, v);
    setParams(p);
  };
  const plan = plans?.find((p) => p.service === service);

  return (
    <>
      <h1>Tracking plans</h1>
      <Section id="plans" title="Services">
        <div class="toolbar">
          <button type="button" onClick={() => void load()}>
            Refresh
          </button>
        </div>
        {error !== undefined && <ErrorNotice error={error} title="The plans could not be read" />}
        {plans === undefined ? (
          error === undefined && <p class="empty">Loading…</p>
        ) : plans.length === 0 ? (
          <p class="empty">
            No service has a tracking plan yet.{' '}
            {admin ? 'Register a schema below to start one.' : 'A key with the admin scope can register one.'}
          </p>
        ) : (
          <Table class="plans" columns={['Service', 'Mode', 'Unknown types', 'Types']}>
            {plans.map((p) => (
              <tr
                key={p.service}
                data-service={p.service}
                class={p.service === service ? 'selected' : undefined}
              >
                <th scope="row">
                  <button type="button" class="link" onClick={() => select({ service: p.service })}>
                    {p.service}
                  </button>
                </th>
                <td>{p.mode}</td>
                <td>{p.unknownTypes}</td>
                <td>
                  {p.types.length === 0
                    ? '—'
                    : p.types.map((t) => (
                        <button
                          type="button"
                          class="link type-link"
                          key={t.type}
                          data-type={t.type}
                          onClick={() => select({ service: p.service, type: t.type })}
                        >
                          {t.type} v{t.version}
                        </button>
                      ))}
                </td>
              </tr>
            ))}
          </Table>
        )}
      </Section>
      {admin && plan && <SettingsForm plan={plan} onSaved={() => void load()} />}
      {service && type && (
        <SchemaView
          service={service}
          type={type}
          version={params.get('version') ?? undefined}
          revision={revision}
          admin={admin}
          onVersion={(v) => select({ service, type, version: v })}
          onDeleted={() => {
            select({ service });
            void load();
          }}
        />
      )}
      {admin && (
        <SchemaEditor
          service={service}
          type={type}
          types={plan?.types ?? []}
          onSaved={(s, t) => {
            select({ service: s, type: t });
            void load();
          }}
        />
      )}
      {hasAnyScope(who, ['ingest']) && (
        <TryEvent key={`try:${service}/${type}`} service={service} type={type} />
      )}
    </>
  );
}

function SettingsForm({ plan, onSaved }: { plan: ServicePlan; onSaved(): void }) {
  const [mode, setMode] = useState(plan.mode);
  const [unknownTypes, setUnknown] = useState(plan.unknownTypes);
  const action = useAction();
  useEffect(() => {
    setMode(plan.mode);
    setUnknown(plan.unknownTypes);
  }, [plan.service, plan.mode, plan.unknownTypes]);
  const save = async (e: Event) => {
    e.preventDefault();
    const ok = await action.run(async () => {
      const saved = await api<{ mode: string; unknownTypes: string }>(
        `/v1/schemas/${encodeURIComponent(plan.service)}`,
        { method: 'PUT', body: { mode, unknownTypes } },
      );
      return `Saved: ${plan.service} is now in mode ${saved.mode}, unknown types ${saved.unknownTypes}.`;
    });
    if (ok) onSaved();
  };
  return (
    <Section id="settings" title={`Settings of ${plan.service}`}>
      <form class="plan-settings" onSubmit={save}>
        <label>
          Mode (registered types){' '}
          <select
            id="plan-mode"
            value={mode}
            onChange={(e) => setMode((e.target as HTMLSelectElement).value as typeof mode)}
          >
            {MODES.map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        </label>
        <label>
          Unknown types{' '}
          <select
            id="plan-unknown"
            value={unknownTypes}
            onChange={(e) => setUnknown((e.target as HTMLSelectElement).value as typeof unknownTypes)}
          >
            {UNKNOWN.map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" disabled={action.busy}>
          {action.busy ? 'Saving…' : 'Save settings'}
        </button>
      </form>
      <p class="hint">
        off: not checked · warn: stored, with its violations on the row and in the response · reject: refused
        (schema_violation, unknown_event_type).
      </p>
      <Outcome action={action} title="The settings were not saved" where={PLAN_CALLS} />
    </Section>
  );
}

function SchemaView(props: {
  service: string;
  type: string;
  version: string | undefined;
  /** Changes when the schemas may have changed (a save, a refresh): read again. */
  revision: number;
  admin: boolean;
  onVersion(version: string): void;
  onDeleted(): void;
}) {
  const { service, type, version, revision } = props;
  const [shown, setShown] = useState<StoredSchema | undefined>();
  const [error, setError] = useState<unknown>();
  const confirm = useConfirmation<string>();
  const action = useAction();
  useEffect(() => {
    setShown(undefined);
    setError(undefined);
    const query = version ? `?version=${encodeURIComponent(version)}` : '';
    api<StoredSchema>(`${schemaPath(service, type)}${query}`).then(setShown, setError);
  }, [service, type, version, revision]);
  const remove = async () => {
    const ok = await action.run(async () => {
      const gone = await api<{ version: number }>(schemaPath(service, type), { method: 'DELETE' });
      return `Removed version ${gone.version} of ${type}: its events are now an unknown type.`;
    });
    confirm.close(!ok);
    if (ok) props.onDeleted();
  };
  return (
    <Section id="schema" title={`${service} · ${type}`}>
      {error !== undefined && <ErrorNotice error={error} title="The schema could not be read" />}
      {shown && (
        <>
          <p>
            Version {shown.version}, registered {formatTime(shown.createdAt)}
            {shown.deletedAt && `, deleted ${formatTime(shown.deletedAt)}`}.
          </p>
          <div class="toolbar">
            <label>
              Version{' '}
              <select
                id="schema-version"
                value={String(shown.version)}
                onChange={(e) => props.onVersion((e.target as HTMLSelectElement).value)}
              >
                {shown.versions.map((v) => (
                  <option key={v.version} value={String(v.version)}>
                    v{v.version}
                    {v.deletedAt ? ' (deleted)' : ''}
                  </option>
                ))}
              </select>
            </label>
            {props.admin &&
              !shown.deletedAt &&
              (confirm.asking ? (
                <Confirm
                  confirmLabel="Remove the schema"
                  busyLabel="Removing…"
                  busy={action.busy}
                  onConfirm={() => void remove()}
                  onCancel={() => confirm.close()}
                >
                  Remove the schema of <strong>{type}</strong>? Its events become an unknown type.
                </Confirm>
              ) : (
                <button type="button" class="danger" ref={confirm.start} onClick={() => confirm.ask(type)}>
                  Remove…
                </button>
              ))}
          </div>
          <pre class="json schema-json">{JSON.stringify(shown.schema, null, 2)}</pre>
        </>
      )}
      <Outcome action={action} title="The schema was not removed" where={PLAN_CALLS} />
    </Section>
  );
}

function SchemaEditor(props: {
  service: string;
  type: string;
  types: readonly PlanType[];
  onSaved(service: string, type: string): void;
}) {
  const [service, setService] = useState(props.service);
  const [type, setType] = useState(props.type);
  const [text, setText] = useState('{\n  "type": "object",\n  "properties": {},\n  "required": []\n}');
  const [problem, setProblem] = useState<string | undefined>();
  const action = useAction();
  const registered = props.types.some((t) => t.type === props.type);
  // The type this editor just registered: the list then shows it as registered, which must not
  // load its schema over what is being typed since.
  const saved = useRef<string | undefined>(undefined);
  useEffect(() => {
    // Another type picked in the list: edit that one (a save that selected what it wrote keeps its result).
    if (props.service === service && props.type === type) return;
    setService(props.service);
    setType(props.type);
    action.reset();
  }, [props.service, props.type]);
  useEffect(() => {
    // Editing a registered type starts from its current schema.
    if (!props.service || !props.type || !registered) return;
    if (saved.current === `${props.service}/${props.type}`) return;
    saved.current = undefined;
    api<StoredSchema>(schemaPath(props.service, props.type)).then(
      (s) => setText(JSON.stringify(s.schema, null, 2)),
      () => {},
    );
  }, [props.service, props.type, registered]);
  const save = async (e: Event) => {
    e.preventDefault();
    action.reset();
    const parsed = parseJsonObject(text);
    if (!parsed.ok) {
      setProblem(`The schema is not a JSON object: ${parsed.message}`);
      return;
    }
    if (!service.trim() || !type.trim()) {
      setProblem('Name the service and the event type.');
      return;
    }
    setProblem(undefined);
    const ok = await action.run(async () => {
      const written = await api<{ version: number; changed: boolean }>(
        schemaPath(service.trim(), type.trim()),
        {
          method: 'PUT',
          body: { schema: parsed.value },
        },
      );
      return written.changed
        ? `Registered version ${written.version} of ${type.trim()}.`
        : `Unchanged: version ${written.version} is already this schema.`;
    });
    if (ok) {
      saved.current = `${service.trim()}/${type.trim()}`;
      props.onSaved(service.trim(), type.trim());
    }
  };
  return (
    <Section id="editor" title="Register a schema">
      <form class="schema-editor" onSubmit={save} novalidate>
        <label>
          Service{' '}
          <input
            id="editor-service"
            value={service}
            onInput={(e) => setService((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          Event type{' '}
          <input
            id="editor-type"
            value={type}
            onInput={(e) => setType((e.target as HTMLInputElement).value)}
          />
        </label>
        <label class="wide">
          JSON Schema (2020-12) of the event's metadata, or a Segment call's properties or traits
          <textarea
            id="editor-schema"
            rows={14}
            spellcheck={false}
            value={text}
            onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
          />
        </label>
        {problem && (
          <p class="field-problem" id="editor-problem" role="alert">
            {problem}
          </p>
        )}
        <button type="submit" disabled={action.busy}>
          {action.busy ? 'Saving…' : 'Save schema'}
        </button>
      </form>
      <Outcome action={action} title="The schema was refused" where={PLAN_CALLS} />
    </Section>
  );
}

function TryEvent(props: { service: string; type: string }) {
  const [service, setService] = useState(props.service);
  const [type, setType] = useState(props.type);
  const [text, setText] = useState('{}');
  const [problem, setProblem] = useState<string | undefined>();
  const [answer, setAnswer] = useState<DryRunAnswer | undefined>();
  const action = useAction();
  const run = async (e: Event) => {
    e.preventDefault();
    setAnswer(undefined);
    const parsed = parseJsonObject(text);
    if (!parsed.ok) {
      setProblem(`The metadata is not a JSON object: ${parsed.message}`);
      return;
    }
    setProblem(undefined);
    await action.run(async () => {
      setAnswer(
        await api<DryRunAnswer>('/v1/events/validate', {
          body: { events: [{ service: service.trim(), type: type.trim(), metadata: parsed.value }] },
        }),
      );
      return undefined;
    });
  };
  const verdict = answer && verdictOf(answer);
  return (
    <Section id="try" title="Try an event">
      <p class="hint">A dry run: the event is checked as ingest would check it, and nothing is stored.</p>
      <form class="try-event" onSubmit={run} novalidate>
        <label>
          Service{' '}
          <input
            id="try-service"
            value={service}
            onInput={(e) => setService((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          Event type{' '}
          <input id="try-type" value={type} onInput={(e) => setType((e.target as HTMLInputElement).value)} />
        </label>
        <label class="wide">
          Metadata (JSON)
          <textarea
            id="try-metadata"
            rows={6}
            spellcheck={false}
            value={text}
            onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
          />
        </label>
        {problem && (
          <p class="field-problem" id="try-problem" role="alert">
            {problem}
          </p>
        )}
        <button type="submit" disabled={action.busy}>
          {action.busy ? 'Checking…' : 'Check the event'}
        </button>
      </form>
      <Outcome action={action} title="The event could not be checked" where={PLAN_CALLS} />
      {verdict && (
        <div class={`verdict verdict-${verdict.kind}`} data-testid="verdict" role="status">
          <p>
            <strong>{verdict.headline}</strong>
            {verdict.code && (
              <>
                {' '}
                <code class="error-code">{verdict.code}</code> {verdict.message}
              </>
            )}
          </p>
          {verdict.details.length > 0 && (
            <ul class="error-details">
              {verdict.details.map((d) => (
                <li key={`${d.path}:${d.code}`}>
                  <code>{d.path}</code> <code>{d.code}</code> {d.message}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </Section>
  );
}
