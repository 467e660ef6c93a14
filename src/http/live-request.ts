import type { Context } from 'hono';
import type { LiveHub } from '../live/hub.ts';
import { type LiveRefusal, LiveRequest } from '../live/outcomes.ts';
import type { AppEnv } from './env.ts';
import type { Principal } from './key-resolver.ts';
import { INGEST_PATHS } from './segment-body.ts';

/**
 * The live records of this ingest request, while anyone has the live view open; undefined
 * otherwise, which costs the request this one check. Kept in the context for the error path.
 */
export function liveRequest(c: Context<AppEnv>, hub: LiveHub | undefined): LiveRequest | undefined {
  if (!hub?.active) return undefined;
  const known = c.get('liveRequest');
  if (known) return known;
  const principal = c.get('principal') as AppEnv['Variables']['principal'] | undefined;
  const live = newLiveRequest(hub, c.req.path, c.get('requestId'), principal);
  c.set('liveRequest', live);
  return live;
}

/** The live records of an ingest request to `route` (call only while `hub.active`). */
export function newLiveRequest(
  hub: LiveHub,
  route: string,
  requestId: string,
  principal: Principal | undefined,
): LiveRequest {
  return new LiveRequest(hub.publisher, {
    route,
    requestId,
    keyId: principal?.keyId ?? null,
    keyServices: principal?.services ?? null,
    at: Date.now(),
  });
}

/**
 * From the error path: an ingest request refused as a whole (415, 413, not JSON, 401, 429
 * backpressure, …) is one `refused` record, unless its events' own records are out already.
 */
export function publishRefusedRequest(c: Context<AppEnv>, hub: LiveHub | undefined, err: LiveRefusal): void {
  if (!hub?.active || c.req.method !== 'POST' || !INGEST_PATHS.has(c.req.path)) return;
  const live = liveRequest(c, hub);
  if (live && !live.published) live.refusedRequest(err);
}
