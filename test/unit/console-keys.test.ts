import { describe, expect, it } from 'vitest';
import { oldKeyFate, readKeyForm, splitServices } from '../../src/console/web/keys.ts';
import { formatDuration, watchDelay } from '../../src/console/web/time.ts';
import { NewKey } from '../../src/http/routes/admin-keys.ts';

// The keys page's create form and rotation message, and the console's durations and watch
// pace: what the form sends must be what the API accepts, and what it refuses the API would too.

const form = (over: Partial<Parameters<typeof readKeyForm>[0]> = {}) => ({
  name: 'web-shop backend',
  scopes: ['ingest'],
  services: '',
  rateLimitPerMinute: '',
  ...over,
});

describe('the create-key form', () => {
  it('sends name, scopes in a fixed order, services and limit only when given; the API accepts it', () => {
    const minimal = readKeyForm(form());
    expect(minimal).toEqual({ ok: true, request: { name: 'web-shop backend', scopes: ['ingest'] } });
    const full = readKeyForm(
      form({
        name: '  shop  ',
        scopes: ['admin', 'ingest', 'nonsense'],
        services: ' web-shop,billing  web-shop\nv2.api_x ',
        rateLimitPerMinute: ' 600 ',
      }),
    );
    expect(full).toEqual({
      ok: true,
      request: {
        name: 'shop',
        scopes: ['ingest', 'admin'],
        services: ['web-shop', 'billing', 'v2.api_x'],
        rateLimitPerMinute: 600,
      },
    });
    for (const r of [minimal, full]) if (r.ok) expect(NewKey.safeParse(r.request).success).toBe(true);
  });

  it('names every field to fix, as the API would refuse it', () => {
    const r = readKeyForm({
      name: '   ',
      scopes: [],
      services: 'ok, not/ok, emoji😀',
      rateLimitPerMinute: '1.5',
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems.map((p) => p.field)).toEqual(['name', 'scopes', 'services', 'rateLimitPerMinute']);
    expect(r.problems[2]?.message).toContain('not/ok, emoji😀');
    const refused = { name: '', scopes: [], services: ['not/ok'], rateLimitPerMinute: 1.5 };
    expect(NewKey.safeParse(refused).success).toBe(false);

    for (const rate of ['0', '-1', 'abc', '12x', '10000001', '1e400']) {
      const bad = readKeyForm(form({ rateLimitPerMinute: rate }));
      expect(bad.ok, rate).toBe(false);
    }
    expect(readKeyForm(form({ rateLimitPerMinute: '10000000' })).ok).toBe(true);
    expect(readKeyForm(form({ name: 'x'.repeat(129) })).ok).toBe(false);
    expect(readKeyForm(form({ services: 'x'.repeat(65) })).ok).toBe(false);
    const many = Array.from({ length: 101 }, (_, i) => `s${i}`).join(',');
    expect(readKeyForm(form({ services: many })).ok).toBe(false);
  });

  it('splits services on commas, spaces and new lines, each once', () => {
    expect(splitServices('')).toEqual([]);
    expect(splitServices(' , \n ')).toEqual([]);
    expect(splitServices('a,b c\nd,,a')).toEqual(['a', 'b', 'c', 'd']);
  });
});

describe('rotation', () => {
  const now = Date.parse('2026-12-04T12:00:00Z');
  it('says how long the old key keeps working', () => {
    expect(oldKeyFate('2026-12-05T12:00:00Z', now)).toMatch(
      /^The old key keeps working for 24 h more, until .+, then gets 401\.$/,
    );
    expect(oldKeyFate('2026-12-04T13:30:00Z', now)).toContain('for 1 h 30 min more');
    expect(oldKeyFate('2026-12-04T12:00:00Z', now)).toBe('The old key stopped working at once.');
    expect(oldKeyFate(null, now)).toBe('The old key keeps working until it is revoked.');
  });
});

describe('durations and the watch pace', () => {
  it('says a duration in its largest sensible unit', () => {
    expect(formatDuration(0)).toBe('under 1 s');
    expect(formatDuration(999)).toBe('under 1 s');
    expect(formatDuration(1_000)).toBe('1 s');
    expect(formatDuration(45_000)).toBe('45 s');
    expect(formatDuration(12 * 60_000)).toBe('12 min');
    expect(formatDuration(3 * 3_600_000)).toBe('3 h');
    expect(formatDuration(200 * 60_000)).toBe('3 h 20 min');
    expect(formatDuration(7 * 86_400_000)).toBe('7 days');
    expect(formatDuration(-5)).toBe('under 1 s');
  });

  it('looks every second at first, then less often, and never more than every 10 s later', () => {
    expect(watchDelay(0)).toBe(1_000);
    expect(watchDelay(14_999)).toBe(1_000);
    expect(watchDelay(15_000)).toBe(3_000);
    expect(watchDelay(119_999)).toBe(3_000);
    expect(watchDelay(120_000)).toBe(10_000);
    expect(watchDelay(86_400_000)).toBe(10_000);
    // An hour-long pass is looked at a few hundred times, not thousands.
    let looks = 0;
    for (let t = 0; t < 3_600_000; t += watchDelay(t)) looks++;
    expect(looks).toBeLessThan(400);
  });
});
