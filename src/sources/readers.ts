import type { Config } from '../config.ts';
import type { SourceReader } from './errors.ts';
import { HttpSourceReader } from './http.ts';
import { PostgresSourceReader } from './postgres.ts';
import type { Auth, SourceConfig } from './settings.ts';

export type ReaderSettings = Pick<
  Config,
  'SOURCE_HTTP_TIMEOUT_MS' | 'SOURCE_HTTP_MAX_BYTES' | 'SOURCE_MAX_RETRY_AFTER_S'
>;

/** The reader of a pull source (`config` with its secrets put back); undefined for a webhook, which nothing reads. */
export function readerFor(config: SourceConfig, settings: ReaderSettings): SourceReader | undefined {
  switch (config.kind) {
    case 'postgres':
      return new PostgresSourceReader(config, config.connection);
    case 'http':
      return new HttpSourceReader(config, config.auth as Auth | undefined, {
        timeoutMs: settings.SOURCE_HTTP_TIMEOUT_MS,
        maxBytes: settings.SOURCE_HTTP_MAX_BYTES,
        maxRetryAfterMs: settings.SOURCE_MAX_RETRY_AFTER_S * 1000,
      });
    case 'webhook':
      return undefined;
  }
}
