import { describe, expect, it } from 'vitest';
import {
  exportFileName,
  isFinished,
  LineCounter,
  MAX_REMEMBERED,
  parseRemembered,
  remember,
  subjectPath,
  subjectProblem,
} from '../../src/console/web/compliance.ts';

// The compliance page's pure parts: a subject id must reach the subject routes as exactly one
// path segment, whatever it holds; an export's lines are counted however the network cuts them;
// the erasure requests a tab follows survive a reload and nothing else gets in.

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

describe('subject ids in paths', () => {
  it('encodes the subject as one segment', () => {
    expect(subjectPath('user-1', 'opt-out')).toBe('/v1/users/user-1/opt-out');
    expect(subjectPath('a/b?c#d e%', 'events')).toBe('/v1/users/a%2Fb%3Fc%23d%20e%25/events');
    expect(subjectPath('é😀', 'events/export')).toBe('/v1/users/%C3%A9%F0%9F%98%80/events/export');
    // What the browser sends is what the server routes: one segment, decoded back to the id.
    for (const subject of ['a/b', '../x', '%2e%2e', 'x?y=1', '...', 'a b']) {
      const url = new URL(subjectPath(subject, 'events'), 'http://h');
      const segments = url.pathname.split('/');
      expect(segments).toHaveLength(5);
      expect(decodeURIComponent(segments[3] ?? '')).toBe(subject);
      expect(url.search + url.hash).toBe('');
    }
  });

  it('refuses what cannot be sent: empty, too long, NUL, and the dot segments URLs resolve away', () => {
    expect(subjectProblem('')).toMatch(/Enter/);
    expect(subjectProblem('x'.repeat(256))).toBeUndefined();
    expect(subjectProblem('x'.repeat(257))).toMatch(/256/);
    expect(subjectProblem('a\u0000b')).toMatch(/NUL/);
    expect(subjectProblem('.')).toMatch(/cannot/);
    expect(subjectProblem('..')).toMatch(/cannot/);
    expect(subjectProblem('...')).toBeUndefined();
    expect(() => subjectPath('..', 'events')).toThrow(/cannot/);
    // Resolved away indeed: the request would reach another route.
    expect(new URL(`/v1/users/${encodeURIComponent('..')}/events`, 'http://h').pathname).toBe('/v1/events');
  });
});

describe('export files', () => {
  it('names the file after the subject (safe characters only) and the time', () => {
    const at = new Date('2026-12-04T22:07:11.123Z');
    expect(exportFileName('user-1', at)).toBe('tributary-export-user-1-20261204T220711Z.ndjson');
    expect(exportFileName('../etc/pass wd', at)).toBe('tributary-export-etc_pass_wd-20261204T220711Z.ndjson');
    expect(exportFileName('😀', at)).toBe('tributary-export-subject-20261204T220711Z.ndjson');
    expect(exportFileName('x'.repeat(300), at)).toHaveLength(
      'tributary-export--20261204T220711Z.ndjson'.length + 64,
    );
  });

  it('counts NDJSON lines however the chunks are cut, a last line without a newline included', () => {
    const text = '{"a":1}\n{"b":"é\\n"}\n{"c":3}';
    const bytes = new TextEncoder().encode(text);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const counter = new LineCounter();
      counter.add(bytes.slice(0, cut));
      counter.add(bytes.slice(cut));
      expect(counter.lines, `cut at ${cut}`).toBe(3);
      expect(counter.bytes).toBe(bytes.length);
    }
    const ended = new LineCounter();
    ended.add(new TextEncoder().encode('{"a":1}\n{"b":2}\n'));
    ended.add(new Uint8Array());
    expect(ended.lines).toBe(2);
    expect(new LineCounter().lines).toBe(0);
  });
});

describe('followed erasure requests', () => {
  it('puts the newest first, once, and keeps at most MAX_REMEMBERED', () => {
    let list = [{ requestId: id(1), requestedAt: 't1' }];
    list = remember(list, { requestId: id(2), requestedAt: 't2' });
    list = remember(list, { requestId: id(1), requestedAt: 't3' });
    expect(list).toEqual([
      { requestId: id(1), requestedAt: 't3' },
      { requestId: id(2), requestedAt: 't2' },
    ]);
    for (let n = 3; n < 40; n++) list = remember(list, { requestId: id(n), requestedAt: `t${n}` });
    expect(list).toHaveLength(MAX_REMEMBERED);
    expect(list[0]?.requestId).toBe(id(39));
  });

  it('reads back what it stored, and drops anything else', () => {
    const stored = [
      { requestId: id(1), requestedAt: '2026-12-04T00:00:00Z' },
      { requestId: 'not-a-uuid', requestedAt: 'x' },
      { requestId: id(2) },
      null,
      'text',
      { requestId: id(3), requestedAt: '2026-12-04T00:00:01Z', subject: 'dropped' },
    ];
    expect(parseRemembered(JSON.stringify(stored))).toEqual([
      { requestId: id(1), requestedAt: '2026-12-04T00:00:00Z' },
      { requestId: id(3), requestedAt: '2026-12-04T00:00:01Z' },
    ]);
    for (const bad of [null, '', '{', '{"a":1}', '42', 'null']) expect(parseRemembered(bad)).toEqual([]);
  });

  it('stops following a request once it completed or failed', () => {
    expect(['pending', 'running', 'completed', 'failed'].map((s) => isFinished(s as never))).toEqual([
      false,
      false,
      true,
      true,
    ]);
  });
});
