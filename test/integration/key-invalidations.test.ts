import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { KeyInvalidations } from '../../src/http/key-resolver.ts';
import { BASE_REDIS_URL } from '../helpers/env.ts';
import { waitFor } from '../helpers/wait.ts';

const redis = new Redis(BASE_REDIS_URL);
afterAll(() => redis.quit());

function recordingLogger() {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

describe('key invalidations over pub/sub', () => {
  it('delivers a published key id to a subscribed process', async () => {
    const channel = `tributary_test:${randomUUID()}:api-keys:invalidate`;
    const subscriber = new Redis(BASE_REDIS_URL);
    const { logger } = recordingLogger();
    const heard: string[] = [];
    new KeyInvalidations({ redis, subscriber, channel, logger }).subscribe((id) => heard.push(id));
    const publisher = new KeyInvalidations({ redis, subscriber: redis, channel, logger });
    await waitFor(
      async () => {
        await publisher.publish('k1');
        return heard.length > 0;
      },
      5_000,
      'the invalidation',
    );
    expect(heard[0]).toBe('k1');
    subscriber.disconnect();
  });

  it('says nothing when the process stops (closed, then its connection) while its subscriber connects', async () => {
    // As a process's connections are closed: no offline queue, so a quit before ready fails.
    const { logger, lines } = recordingLogger();
    for (let delayMs = 0; delayMs < 20; delayMs++) {
      const subscriber = new Redis(BASE_REDIS_URL, {
        enableOfflineQueue: false,
        connectionName: 'tributary:test',
      });
      const invalidations = new KeyInvalidations({
        redis,
        subscriber,
        channel: `tributary_test:${randomUUID()}`,
        logger,
      });
      invalidations.subscribe(() => {});
      await new Promise((resolve) => setTimeout(resolve, delayMs / 4));
      invalidations.close();
      await subscriber.quit().catch(() => subscriber.disconnect());
      await waitFor(async () => subscriber.status === 'end', 5_000, 'the connection to end');
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);
  });
});
