import { describe, expect, it } from 'vitest';
import { Lifetimes, LifetimesClosedError } from '../../src/roles/lifetimes.ts';

/** A log that keeps what it is given, and the order services were built and closed in. */
function setUp() {
  const events: string[] = [];
  const logged: { level: string; obj: object; msg: string }[] = [];
  const lifetimes = new Lifetimes({
    debug: (obj, msg) => logged.push({ level: 'debug', obj, msg }),
    error: (obj, msg) => logged.push({ level: 'error', obj, msg }),
  });
  /** A service named `name` whose build and close are recorded in `events`. */
  const service = (name: string, closeFails = false) =>
    lifetimes.once(
      name,
      () => {
        events.push(`build ${name}`);
        return { name };
      },
      () => {
        events.push(`close ${name}`);
        if (closeFails) throw new Error(`${name} would not close`);
      },
    );
  return { lifetimes, events, logged, service };
}

describe('service lifetimes', () => {
  it('builds nothing until asked, and each service once however often it is asked', async () => {
    const { events, service } = setUp();
    expect(events).toEqual([]);
    const [a, again] = await Promise.all([service('a'), service('a')]);
    expect(a).toBe(again);
    expect(await service('a')).toBe(a);
    expect(events).toEqual(['build a']);
  });

  it('closes in reverse order of construction, a dependency after what was built from it', async () => {
    const { lifetimes, events, service } = setUp();
    await service('store');
    // Asked for first, finished last: it builds on the two below, so it closes before them.
    const user = lifetimes.once(
      'user',
      async () => {
        await service('subjects');
        await service('store');
        await service('retention');
        events.push('build user');
        return {};
      },
      () => void events.push('close user'),
    );
    await user;
    lifetimes.defer('listener', () => void events.push('close listener'));
    await lifetimes.close();
    expect(events.filter((e) => e.startsWith('close'))).toEqual([
      'close listener',
      'close user',
      'close retention',
      'close subjects',
      'close store',
    ]);
  });

  it('closes each service once when close() is called twice, even at the same time', async () => {
    const { lifetimes, events, service } = setUp();
    await service('a');
    await service('b');
    const first = lifetimes.close();
    const second = lifetimes.close();
    await Promise.all([first, second]);
    await lifetimes.close();
    expect(events.filter((e) => e.startsWith('close'))).toEqual(['close b', 'close a']);
  });

  it('carries on past a closer that fails, and logs which one failed', async () => {
    const { lifetimes, events, logged, service } = setUp();
    await service('a');
    await service('b', true);
    await service('c');
    await expect(lifetimes.close()).resolves.toBeUndefined();
    expect(events.filter((e) => e.startsWith('close'))).toEqual(['close c', 'close b', 'close a']);
    expect(logged).toEqual([
      { level: 'debug', obj: { service: 'c' }, msg: 'closed' },
      { level: 'error', obj: { service: 'b', err: new Error('b would not close') }, msg: 'stop failed' },
      { level: 'debug', obj: { service: 'a' }, msg: 'closed' },
    ]);
  });

  it('records no closer for a build that failed, and closes what was built before it', async () => {
    const { lifetimes, events, service } = setUp();
    await service('a');
    const broken = lifetimes.once(
      'broken',
      () => {
        throw new Error('no connection');
      },
      () => void events.push('close broken'),
    );
    await expect(broken).rejects.toThrow('no connection');
    // Asked again, it is the same failure: never built twice.
    await expect(lifetimes.once('broken', () => ({}))).rejects.toThrow('no connection');
    await lifetimes.close();
    expect(events).toEqual(['build a', 'close a']);
  });

  it('refuses to build or start anything once closing has begun', async () => {
    const { lifetimes, service } = setUp();
    await service('a');
    await lifetimes.close();
    await expect(service('late')).rejects.toBeInstanceOf(LifetimesClosedError);
    expect(() => lifetimes.defer('late-listener', () => {})).toThrow(LifetimesClosedError);
    // What was built before stays available to whatever still holds it.
    await expect(service('a')).resolves.toEqual({ name: 'a' });
  });
});
