import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { DatabaseBreaker, ERROR_RATE_MIN_CALLS, isBreakerOpen } from '../../src/worker/breaker.ts';

const CONFIG = {
  BREAKER_FAILURE_THRESHOLD: 3,
  BREAKER_HALF_OPEN_AFTER_MS: 60_000,
  BREAKER_MAX_HALF_OPEN_AFTER_MS: 60_000,
  BREAKER_SLOW_INSERT_MS: 40,
  BREAKER_SLOW_INSERTS: 2,
  BREAKER_ERROR_RATE: 0.2,
  BREAKER_ERROR_WINDOW_MS: 5_000,
};

function breaker() {
  const metrics = new Metrics(new Registry());
  const logged: { trigger?: string; msg: string }[] = [];
  const logger = pino(
    { level: 'info' },
    { write: (line: string) => logged.push(JSON.parse(line) as { trigger?: string; msg: string }) },
  );
  return { b: new DatabaseBreaker({ config: CONFIG, logger, metrics }), metrics, logged };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code });
const opens = async (metrics: Metrics, trigger: string) =>
  (await metrics.breakerOpens.get()).values.find((v) => v.labels.trigger === trigger)?.value;

describe('the breaker’s three triggers', () => {
  it('connection: consecutive availability failures open it; a success in between starts the count again', async () => {
    const { b, metrics, logged } = breaker();
    const refuse = () => b.execute(() => Promise.reject(pgError('ECONNREFUSED')));
    await expect(refuse()).rejects.toThrow();
    await expect(refuse()).rejects.toThrow();
    await b.execute(async () => 1);
    await expect(refuse()).rejects.toThrow();
    await expect(refuse()).rejects.toThrow();
    expect(b.state).toBe('closed');
    await expect(refuse()).rejects.toThrow();
    expect(b.state).toBe('open');
    expect(b.trigger).toBe('connection');
    expect(b.reason).toContain('ECONNREFUSED');
    expect(await opens(metrics, 'connection')).toBe(1);
    expect(logged.find((l) => l.msg.startsWith('database circuit breaker opened'))?.trigger).toBe(
      'connection',
    );
    const refused = await b.execute(async () => 1).catch((err: unknown) => err);
    expect(isBreakerOpen(refused)).toBe(true);
  });

  it('slow_insert: counted when a call passes the limit, not when it ends; the slow call still gets its result', async () => {
    const { b, metrics } = breaker();
    let release: () => void = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    // Two calls waiting (as behind a lock): the breaker opens while they wait.
    const first = b.execute(async () => {
      await held;
      return 'first';
    });
    const second = b.execute(async () => {
      await held;
      return 'second';
    });
    await sleep(CONFIG.BREAKER_SLOW_INSERT_MS * 3);
    expect(b.state).toBe('open');
    expect(b.trigger).toBe('slow_insert');
    expect(await opens(metrics, 'slow_insert')).toBe(1);
    release();
    expect(await Promise.all([first, second])).toEqual(['first', 'second']);
    // A slow call that fails still fails for its caller.
    const { b: other } = breaker();
    const failing = other.execute(async () => {
      await sleep(CONFIG.BREAKER_SLOW_INSERT_MS * 2);
      throw new Error('late failure');
    });
    await expect(failing).rejects.toThrow('late failure');
  });

  it('slow_insert: one slow call between fast ones does not open it', async () => {
    const { b } = breaker();
    await b.execute(() => sleep(CONFIG.BREAKER_SLOW_INSERT_MS * 2));
    await b.execute(async () => 1);
    await b.execute(() => sleep(CONFIG.BREAKER_SLOW_INSERT_MS * 2));
    expect(b.state).toBe('closed');
  });

  it('error_rate: a share of failures over the limit opens it once enough calls were seen; rows refused as data never count', async () => {
    const { b, metrics } = breaker();
    const call = (fail: boolean, code = '40P01') =>
      b.execute(async () => {
        if (fail) throw pgError(code);
        return 1;
      });
    // Data errors (class 22/23) are the rows' fault: any share of them leaves it closed.
    for (let i = 0; i < 30; i++) await call(i % 2 === 0, '23505').catch(() => {});
    expect(b.state).toBe('closed');
    // One failure in four (deadlocks: transient, never a connection failure), past 20 %.
    let calls = 0;
    while (b.state === 'closed' && calls < 100) {
      await call(calls % 4 === 0).catch(() => {});
      calls++;
    }
    expect(b.state).toBe('open');
    expect(b.trigger).toBe('error_rate');
    expect(b.reason).toContain('40P01');
    expect(calls).toBeGreaterThanOrEqual(ERROR_RATE_MIN_CALLS / 4);
    expect(await opens(metrics, 'error_rate')).toBe(1);
    expect(await opens(metrics, 'connection')).toBe(0);
  });

  it('error_rate: under the limit it stays closed', async () => {
    const { b } = breaker();
    for (let i = 0; i < 100; i++) {
      await b
        .execute(async () => {
          if (i % 10 === 0) throw pgError('40P01');
        })
        .catch(() => {});
    }
    expect(b.state).toBe('closed');
  });
});
