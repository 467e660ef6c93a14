import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { LiveRequest } from '../live/outcomes.ts';
import type { InvalidInput } from './errors.ts';
import type { Principal } from './key-resolver.ts';

/** Hono context variables set by the middleware. */
export interface AppEnv {
  /** The Node request and response under @hono/node-server; absent under `app.request()`. */
  Bindings: { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined;
  Variables: {
    requestId: string;
    /** Built on first use by `requestLogger(c)`. */
    logger: Logger | undefined;
    baseLogger: Logger;
    principal: Principal;
    /** The client's address (`clientAddress` middleware): the audit trail's, by TRUST_PROXY. */
    clientAddress: string | null | undefined;
    /**
     * Set by `rateLimit` on the ingest routes, whose limit counts events: spends `n` (the
     * events of the request) once the body is read, or throws its 429 (`spendEvents`).
     */
    spendEvents: ((n: number) => Promise<void>) | undefined;
    /**
     * A Segment route's body, read and parsed before authentication when no header carried
     * a key (its `writeKey` is the key then); the route reads the body itself otherwise.
     */
    segmentBody: Record<string, unknown> | undefined;
    /** The `writeKey` of that body: presented like a header's key, never logged. */
    bodyKey: string | undefined;
    /** An ingest request's live records, made only while someone has the live view open (`liveRequest`). */
    liveRequest: LiveRequest | undefined;
    /** The code and message of this route's `400` for input zod refuses (`invalidInput`). */
    invalidInput: InvalidInput | undefined;
  };
}
