import { readdir, readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { bufferKeys, partitionOfStream } from '../../src/buffer/keys.ts';
import { partitionFor } from '../../src/buffer/partition.ts';

describe('partitionFor', () => {
  it('is stable and within range', () => {
    expect(partitionFor('user-42', 8)).toBe(partitionFor('user-42', 8));
    for (let i = 0; i < 1000; i++) {
      const p = partitionFor(`k${i}`, 8);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThan(8);
    }
  });

  it('spreads keys evenly', () => {
    const counts = new Array(8).fill(0);
    for (let i = 0; i < 80_000; i++) counts[partitionFor(`user-${i}`, 8)]++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(600);
  });
});

describe('bufferKeys', () => {
  it('names every key under the prefix with per-partition hash tags', () => {
    const keys = bufferKeys('t1', 3);
    expect(keys.streams).toEqual(['t1:events:{0}', 't1:events:{1}', 't1:events:{2}']);
    expect(keys.dedupe(2, 99)).toBe('t1:dedupe:{2}:99');
    expect(keys.deadLetter).toBe('t1:dead');
    expect(partitionOfStream('t1:events:{2}')).toBe(2);
    expect(partitionOfStream('other')).toBe(-1);
  });

  it('names every key and channel, as deployed data and other processes expect them', () => {
    const keys = bufferKeys('t1', 2);
    // Each name once: a renamed key would strand what an older process wrote under it.
    expect({
      prefix: keys.prefix,
      partitions: keys.partitions,
      stream: keys.stream(1),
      streams: keys.streams,
      dedupe: keys.dedupe(0, 7),
      deadLetter: keys.deadLetter,
      keyLoad: keys.keyLoad,
      workers: keys.workers,
      rateLimit: keys.rateLimit('k-1'),
      authFailures: keys.authFailures('192.0.2.7'),
      keyInvalidations: keys.keyInvalidations,
      planChanges: keys.planChanges,
      subjects: keys.subjects,
      dsarDropped: keys.dsarDropped('r-1'),
      live: keys.live,
      liveListeners: keys.liveListeners,
    }).toEqual({
      prefix: 't1',
      partitions: 2,
      stream: 't1:events:{1}',
      streams: ['t1:events:{0}', 't1:events:{1}'],
      dedupe: 't1:dedupe:{0}:7',
      deadLetter: 't1:dead',
      keyLoad: 't1:keyload',
      workers: 't1:workers',
      rateLimit: 't1:ratelimit:{k-1}',
      authFailures: 't1:authfail:192.0.2.7',
      keyInvalidations: 't1:api-keys:invalidate',
      planChanges: 't1:plans',
      subjects: 't1:subjects',
      dsarDropped: 't1:dsar:r-1:dropped',
      live: 't1:live',
      liveListeners: 't1:live:listeners',
    });
    // The test above names every member: a new key must be added there too.
    expect(Object.keys(keys).sort()).toEqual(
      [
        'authFailures',
        'dedupe',
        'deadLetter',
        'dsarDropped',
        'keyInvalidations',
        'keyLoad',
        'live',
        'liveListeners',
        'partitions',
        'planChanges',
        'prefix',
        'rateLimit',
        'stream',
        'streams',
        'subjects',
        'workers',
      ].sort(),
    );
  });

  it('is the only place in src/ that builds a Redis key or channel name from the prefix', async () => {
    const root = new URL('../../src/', import.meta.url);
    const files = (await readdir(root, { recursive: true })).filter((f) => f.endsWith('.ts'));
    expect(files).toContain('buffer/keys.ts');
    const offenders: string[] = [];
    for (const file of files) {
      if (file === 'buffer/keys.ts') continue;
      const lines = (await readFile(new URL(file, root), 'utf8')).split('\n');
      lines.forEach((line, i) => {
        const buildsKey =
          // `${prefix}:…`, `${opts.prefix}:…`, `${keys.prefix}:…`
          /\$\{[^}]*prefix[^}]*\}:/i.test(line) ||
          // prefix + ':…'
          /prefix\s*\+\s*['"`]:/i.test(line) ||
          // config.REDIS_PREFIX goes to bufferKeys() and nowhere else
          (/\.REDIS_PREFIX\b/.test(line) && !/bufferKeys\(/.test(line));
        if (buildsKey) offenders.push(`src/${file}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(offenders).toEqual([]);
  });
});
