import './styles.css';
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import {
  ApiError,
  forgetKey,
  hasAnyScope,
  storedKey,
  storeKey,
  type Whoami,
  whenUnauthorized,
  whoami,
} from './api.ts';
import { ROUTES, type Route } from './routes.ts';
import { ErrorNotice } from './ui.tsx';

// The shell: sign-in, navigation and a hash router. Hash addresses (`#/live?outcome=refused`)
// never reach the server, so a deep link reloads as is and no console path can collide with
// an API path (`/health`, `/metrics`, `/v1/…`).

interface Location {
  route: Route | undefined;
  path: string;
  params: URLSearchParams;
}

function parseHash(hash: string): Location {
  const raw = hash.startsWith('#/') ? hash.slice(2) : '';
  const [path = '', query = ''] = raw.split('?', 2) as [string?, string?];
  const name = path || (ROUTES[0]?.path ?? '');
  return { route: ROUTES.find((r) => r.path === name), path: name, params: new URLSearchParams(query) };
}

const hrefOf = (path: string, params?: URLSearchParams) => {
  const query = params?.toString();
  return `#/${path}${query ? `?${query}` : ''}`;
};

/** The current address; hashes that are not routes (`#main`, the skip link's) leave it as it was. */
function useLocation(): Location {
  const [location, setLocation] = useState(() => parseHash(window.location.hash));
  useEffect(() => {
    const onChange = () => {
      if (window.location.hash === '' || window.location.hash.startsWith('#/')) {
        setLocation(parseHash(window.location.hash));
      }
    };
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return location;
}

function SignIn(props: { onSignedIn(who: Whoami): void; reason: ApiError | undefined }) {
  const [error, setError] = useState<ApiError | undefined>(props.reason);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);

  const submit = async (e: Event) => {
    e.preventDefault();
    const key = input.current?.value.trim() ?? '';
    if (!key) {
      setError(new ApiError('missing_key', 0, 'enter an API key'));
      input.current?.focus();
      return;
    }
    setBusy(true);
    try {
      const who = await whoami(key);
      storeKey(key);
      props.onSignedIn(who);
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError('client_error', 0, String(err)));
      input.current?.select();
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="signin" tabindex={-1}>
      <h1>Tributary console</h1>
      <form class="signin-form" onSubmit={submit} aria-describedby="signin-help" novalidate>
        <label for="api-key">API key</label>
        <input
          ref={input}
          id="api-key"
          name="api-key"
          type="password"
          autocomplete="off"
          spellcheck={false}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? 'signin-error' : undefined}
        />
        <p id="signin-help" class="hint">
          The key stays in this tab (session storage) and is sent only to this server, in the Authorization
          header. Every action is taken with it, and audited as it.
        </p>
        <div id="signin-error">{error && <ErrorNotice error={error} title="Sign-in failed" />}</div>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}

function Shell(props: { who: Whoami; onSignOut(): void }) {
  const location = useLocation();
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  const route = location.route;

  useEffect(() => {
    document.title = `${route?.title ?? 'Not found'} · Tributary`;
    // Keyboard and screen-reader users start reading the page they navigated to.
    if (!first.current) main.current?.focus();
    first.current = false;
  }, [location.path]);

  const setParams = (next: URLSearchParams) => {
    window.location.hash = hrefOf(location.path, next);
  };
  const skip = (e: Event) => {
    e.preventDefault();
    main.current?.focus();
  };

  return (
    <>
      {/* biome-ignore lint/a11y/useValidAnchor: a skip link is a link by convention; following its #main would replace the page's #/route address, so it moves focus itself */}
      <a class="skip-link" href="#main" onClick={skip}>
        Skip to content
      </a>
      <header class="topbar">
        <span class="brand">Tributary</span>
        <nav aria-label="Console">
          <ul>
            {ROUTES.map((r) => (
              <li key={r.path}>
                <a href={hrefOf(r.path)} aria-current={r === route ? 'page' : undefined}>
                  {r.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span class="who-name" title={`key ${props.who.keyId}`}>
            {props.who.name || props.who.keyId}
          </span>
          <span class="who-scopes">{props.who.scopes.join(' · ')}</span>
          <button type="button" onClick={props.onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" ref={main} tabindex={-1}>
        {!route ? (
          <>
            <h1>Not found</h1>
            <p>
              There is no page <code>{location.path}</code>.{' '}
              <a href={hrefOf(ROUTES[0]?.path ?? '')}>Go to the live view</a>.
            </p>
          </>
        ) : hasAnyScope(props.who, route.needs) ? (
          <route.page key={route.path} who={props.who} params={location.params} setParams={setParams} />
        ) : (
          <>
            <h1>{route.title}</h1>
            <p class="notice">
              This page needs a key with the {route.needs.map((s) => `"${s}"`).join(' or ')} scope; this key
              has {props.who.scopes.length ? props.who.scopes.join(', ') : 'none'}.
            </p>
          </>
        )}
      </main>
    </>
  );
}

type Session = { state: 'checking' } | { state: 'out'; reason?: ApiError } | { state: 'in'; who: Whoami };

function App() {
  const [session, setSession] = useState<Session>(() =>
    storedKey() ? { state: 'checking' } : { state: 'out' },
  );

  useEffect(() => {
    whenUnauthorized((reason) => {
      forgetKey();
      setSession({ state: 'out', reason });
    });
    if (!storedKey()) return;
    whoami()
      .then((who) => setSession({ state: 'in', who }))
      .catch((reason: unknown) => {
        if (reason instanceof ApiError && reason.status === 401) return; // signed out by the handler
        setSession({ state: 'out', reason: reason instanceof ApiError ? reason : undefined });
      });
  }, []);

  if (session.state === 'checking') return <p class="loading">Signing in…</p>;
  if (session.state === 'out') {
    return <SignIn reason={session.reason} onSignedIn={(who) => setSession({ state: 'in', who })} />;
  }
  const signOut = () => {
    forgetKey();
    setSession({ state: 'out' });
  };
  return <Shell who={session.who} onSignOut={signOut} />;
}

const root = document.getElementById('app');
if (root) render(<App />, root);
