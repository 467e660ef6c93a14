import type { Logger } from 'pino';
import type { Principal } from './key-resolver.ts';

/** Hono context variables set by the middleware. */
export interface AppEnv {
  Variables: {
    requestId: string;
    logger: Logger;
    principal: Principal;
  };
}
