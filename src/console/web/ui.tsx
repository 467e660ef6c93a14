import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { ApiError } from './api.ts';

// Small pieces every page uses: how an error is shown, status badges, number formatting and
// polling that pauses while the tab is hidden.

/** An error as the console shows it: always with its `code`, and the request id to quote. */
export function ErrorNotice(props: { error: unknown; title?: string; children?: ComponentChildren }) {
  const err =
    props.error instanceof ApiError
      ? props.error
      : new ApiError(
          'client_error',
          0,
          props.error instanceof Error ? props.error.message : String(props.error),
        );
  return (
    <div class="notice notice-error" role="alert">
      {props.title && <strong>{props.title}: </strong>}
      <code class="error-code">{err.code}</code> {err.message}
      {err.details.length > 0 && (
        <ul class="error-details">
          {err.details.map((d) => (
            <li key={`${d.path}:${d.message}`}>
              {d.path && <code>{d.path}</code>} {d.message}
            </li>
          ))}
        </ul>
      )}
      {err.requestId && <span class="request-id"> (request {err.requestId})</span>}
      {props.children}
    </div>
  );
}

/**
 * What a page says when its API is not served on this port: with ADMIN_PORT set, the live
 * view is on the public port and health and admin calls on the admin port (a 404 `not_found`).
 */
export function elsewhereHint(error: unknown, what: string, port: 'public' | 'admin'): string | undefined {
  if (!(error instanceof ApiError) || error.code !== 'not_found') return undefined;
  return `This port does not serve ${what}. Where ADMIN_PORT is set, ${what} is served on the ${port} port only: open the console there.`;
}

/** A titled part of a page; `id` names it (`<id>-heading`), for links and tests. */
export function Section(props: { id: string; title: string; class?: string; children: ComponentChildren }) {
  return (
    <section aria-labelledby={`${props.id}-heading`} class={props.class}>
      <h2 id={`${props.id}-heading`}>{props.title}</h2>
      {props.children}
    </section>
  );
}

/** A table of rows with a header row; scrolls sideways on its own when too wide (a phone). */
export function Table(props: { class?: string; columns: readonly string[]; children: ComponentChildren }) {
  return (
    <div class="table-scroll">
      <table class={props.class}>
        <thead>
          <tr>
            {props.columns.map((c) => (
              <th scope="col" key={c}>
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{props.children}</tbody>
      </table>
    </div>
  );
}

export type Tone = 'good' | 'warn' | 'bad' | 'neutral';

export function Badge(props: { tone: Tone; children: ComponentChildren }) {
  return <span class={`badge badge-${props.tone}`}>{props.children}</span>;
}

const integer = new Intl.NumberFormat('en');
export const formatCount = (n: number): string => integer.format(n);

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

export const formatPercent = (ratio: number): string => `${(ratio * 100).toFixed(ratio < 0.1 ? 1 : 0)} %`;

/** Local wall-clock time with milliseconds: outcomes arrive many per second. */
export function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** How long ago, coarsely ("4 s ago", "3 min ago"). */
export function formatAgo(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (Number.isNaN(s)) return iso;
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/** Runs `tick` now and every `ms` while the tab is visible (and at once when it shows again). */
export function usePolling(tick: () => void | Promise<void>, ms: number): void {
  const latest = useRef(tick);
  latest.current = tick;
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    let running = false;
    const run = async () => {
      if (running) return;
      running = true;
      clearTimeout(timer);
      try {
        if (document.visibilityState === 'visible') await latest.current();
      } finally {
        running = false;
        if (!stopped) timer = setTimeout(run, ms);
      }
    };
    const onVisible = () => {
      if (document.visibilityState === 'visible') void run();
    };
    void run();
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, [ms]);
}
