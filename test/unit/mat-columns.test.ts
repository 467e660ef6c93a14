import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type CatalogColumn,
  type ColumnKind,
  fits,
  identifierFor,
  type ObservedPath,
  planColumns,
  planEventTables,
  planRebuild,
  RESERVED_COLUMNS,
  RESERVED_TABLES,
  sqlType,
  widen,
} from '../../src/materialize/columns.ts';

const NONE: ReadonlySet<string> = new Set();
const KINDS: readonly ColumnKind[] = ['boolean', 'bigint', 'double', 'text'];
const kind = fc.constantFrom(...KINDS);
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
const hash8 = (parts: readonly string[]) =>
  createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 8);
const name = (path: readonly string[], taken: ReadonlySet<string> = NONE) =>
  identifierFor(path, RESERVED_COLUMNS, taken);

/** Path elements: ASCII words, camelCase, digits, punctuation, multibyte and astral characters. */
const segment = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.constantFrom('orderId', 'HTMLParser', 'Order Id', 'order_id', '2fa', 'select', 'ÉTÉ', '', '_'),
);
const path = fc.array(segment, { maxLength: 4 });
const observation = fc.record({
  path: fc.array(fc.constantFrom('a', 'b', 'B', 'c d', 'é'), { maxLength: 3 }),
  kind,
});

const column = (p: string[], c: string, k: ColumnKind, wanted: ColumnKind = k): CatalogColumn => ({
  path: p,
  column: c,
  kind: k,
  wanted,
});

describe('kinds', () => {
  it('widen, fits and sqlType follow boolean < bigint < double < text', () => {
    expect(widen('boolean', 'bigint')).toBe('bigint');
    expect(widen('text', 'bigint')).toBe('text');
    expect(widen('double', 'bigint')).toBe('double');
    expect(fits('bigint', 'double')).toBe(true);
    expect(fits('text', 'double')).toBe(false);
    expect(KINDS.map(sqlType)).toEqual(['boolean', 'bigint', 'double precision', 'text']);
  });

  it('widen is commutative, associative and idempotent; fits(a, b) ⇔ widen(a, b) = b', () => {
    fc.assert(
      fc.property(kind, kind, kind, (a, b, c) => {
        expect(widen(a, b)).toBe(widen(b, a));
        expect(widen(widen(a, b), c)).toBe(widen(a, widen(b, c)));
        expect(widen(a, a)).toBe(a);
        expect(fits(a, b)).toBe(widen(a, b) === b);
      }),
    );
  });
});

describe('identifierFor', () => {
  it.each([
    [['orderId'], 'order_id'],
    [['OrderId'], 'order_id'],
    [['HTMLParser'], 'html_parser'],
    [['userID2Value'], 'user_id2_value'],
    [['address', 'city'], 'address_city'],
    [['Order  Total ($)'], 'order_total'],
    [['__a--b__'], 'a_b'],
    [['2fa'], '_2fa'],
    [['select'], '_select'],
    [['Name'], '_name'],
    [['id'], '_id'],
    [['xmin'], '_xmin'],
    [['Café Crème'], 'caf_cr_me'],
    [['\u212Aelvin'], 'elvin'],
    [['日本'], '_'],
    [[''], '_'],
    [[], '_'],
  ])('%j → %s', (p, expected) => {
    expect(name(p)).toBe(expected);
  });

  it('event tables avoid the fixed tables and reserved words', () => {
    expect(identifierFor(['Users'], RESERVED_TABLES, NONE)).toBe('_users');
    expect(identifierFor(['Order'], RESERVED_TABLES, NONE)).toBe('_order');
    expect(identifierFor(['Order Completed'], RESERVED_TABLES, NONE)).toBe('order_completed');
  });

  it('cuts a name longer than 63 bytes and suffixes the hash of the path', () => {
    const long = ['a'.repeat(40), 'b'.repeat(40)];
    const id = name(long);
    expect(bytes(id)).toBe(63);
    expect(id).toBe(`${'a'.repeat(40)}_${'b'.repeat(13)}_${hash8(long)}`);
    expect(name(['x'.repeat(63)])).toBe('x'.repeat(63));
    expect(name(['x'.repeat(64)])).toBe(`${'x'.repeat(54)}_${hash8(['x'.repeat(64)])}`);
  });

  it('counts bytes: multibyte characters never push a name past 63 bytes', () => {
    for (const p of [
      ['é'.repeat(70)],
      ['a😀'.repeat(40)],
      ['ü'.repeat(30), 'ß'.repeat(30)],
      ['Ωmega'.repeat(20)],
    ]) {
      const id = name(p);
      expect(bytes(id)).toBeLessThanOrEqual(63);
      expect(id).toMatch(/^[a-z0-9_]+$/);
    }
  });

  it("keeps 'Order Id', 'order_id' and 'orderId' apart, the same way every time", () => {
    const taken = new Set<string>();
    const ids = [['Order Id'], ['order_id'], ['orderId']].map((p) => {
      const id = name(p, taken);
      taken.add(id);
      return id;
    });
    expect(ids[0]).toBe('order_id');
    expect(ids[1]).toBe(`order_id_${hash8(['order_id'])}`);
    expect(ids[2]).toBe(`order_id_${hash8(['orderId'])}`);
    expect(new Set(ids).size).toBe(3);
    expect(name(['orderId'], new Set(ids.slice(0, 2)))).toBe(ids[2]);
  });

  it('falls back to a counter when the hash suffix is taken too', () => {
    const p = ['orderId'];
    const taken = new Set(['order_id', `order_id_${hash8(p)}`]);
    expect(name(p, taken)).toBe(`order_id_${hash8([...p, '2'])}`);
    taken.add(`order_id_${hash8([...p, '2'])}`);
    expect(name(p, taken)).toBe(`order_id_${hash8([...p, '3'])}`);
  });

  it('a cut name that is taken moves straight to the counter', () => {
    const long = ['y'.repeat(80)];
    const first = name(long);
    const second = name(long, new Set([first]));
    expect(second).toBe(`${'y'.repeat(54)}_${hash8([...long, '2'])}`);
  });

  it('any path: ≤ 63 bytes of [a-z0-9_], not reserved, not taken, deterministic', () => {
    fc.assert(
      fc.property(path, fc.array(path, { maxLength: 6 }), (p, others) => {
        const taken = new Set<string>();
        for (const o of others) taken.add(name(o, taken));
        const id = name(p, taken);
        expect(bytes(id)).toBeLessThanOrEqual(63);
        expect(id).toMatch(/^[a-z0-9_]+$/);
        expect(RESERVED_COLUMNS.has(id)).toBe(false);
        expect(taken.has(id)).toBe(false);
        expect(name(p, new Set(taken))).toBe(id);
      }),
    );
  });
});

describe('planColumns', () => {
  it('adds new paths in path order, widens wanted, never changes kind', () => {
    const existing = [column(['amount'], 'amount', 'bigint')];
    const plan = planColumns(
      existing,
      [
        { path: ['sku'], kind: 'text' },
        { path: ['amount'], kind: 'double' },
        { path: ['address', 'city'], kind: 'text' },
        { path: ['amount'], kind: 'boolean' },
        { path: ['id'], kind: 'bigint' },
      ],
      10,
    );
    expect(plan.added.map((c) => [c.column, c.kind])).toEqual([
      ['address_city', 'text'],
      ['_id', 'bigint'],
      ['sku', 'text'],
    ]);
    expect(plan.widened).toEqual([column(['amount'], 'amount', 'bigint', 'double')]);
    expect(plan.overCap).toEqual([]);
  });

  it('merges repeated paths at their widest kind and leaves narrower ones alone', () => {
    const plan = planColumns(
      [column(['n'], 'n', 'bigint', 'double')],
      [
        { path: ['n'], kind: 'bigint' },
        { path: ['x'], kind: 'boolean' },
        { path: ['x'], kind: 'double' },
        { path: ['x'], kind: 'bigint' },
      ],
      10,
    );
    expect(plan.widened).toEqual([]);
    expect(plan.added).toEqual([column(['x'], 'x', 'double')]);
  });

  it('stops at the cap and lists the rest, in path order', () => {
    const plan = planColumns(
      [column(['a'], 'a', 'text')],
      ['d', 'c', 'b', 'e'].map((p) => ({ path: [p], kind: 'text' as const })),
      3,
    );
    expect(plan.added.map((c) => c.column)).toEqual(['b', 'c']);
    expect(plan.overCap).toEqual([['d'], ['e']]);
  });

  it('names around existing names: a new spelling of a taken name gets a suffix', () => {
    const plan = planColumns(
      [column(['order_id'], 'order_id', 'text')],
      [{ path: ['orderId'], kind: 'text' }],
      5,
    );
    expect(plan.added[0]?.column).toBe(`order_id_${hash8(['orderId'])}`);
  });

  const existingArb = fc.uniqueArray(observation, { selector: (o) => JSON.stringify(o.path), maxLength: 5 });

  it('never exceeds the cap, gives distinct names, and does not depend on the order of observed', () => {
    fc.assert(
      fc.property(
        existingArb,
        fc.array(observation, { maxLength: 20 }),
        fc.integer({ min: 0, max: 8 }),
        fc.integer(),
        (seeds, observed, cap, seed) => {
          const taken = new Set<string>();
          const existing = seeds.map((o) => {
            const c = column(o.path, name(o.path, taken), o.kind);
            taken.add(c.column);
            return c;
          });
          const plan = planColumns(existing, observed, cap);
          expect(existing.length + plan.added.length).toBeLessThanOrEqual(Math.max(cap, existing.length));
          const names = [...existing, ...plan.added].map((c) => c.column);
          expect(new Set(names).size).toBe(names.length);
          for (const c of plan.added) expect(RESERVED_COLUMNS.has(c.column)).toBe(false);
          const shuffled = [...observed].sort(
            (a, b) => hashCode(`${seed}${JSON.stringify(a)}`) - hashCode(`${seed}${JSON.stringify(b)}`),
          );
          expect(planColumns([...existing].reverse(), shuffled, cap)).toEqual(plan);
        },
      ),
    );
  });
});

/** A small deterministic hash, for shuffling by a seed. */
function hashCode(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}

describe('planRebuild', () => {
  it('keeps catalog names, takes the widest of data and wanted, and names new paths around old names', () => {
    const existing = [
      column(['orderId'], 'order_id', 'bigint', 'double'),
      column(['total'], 'total', 'bigint'),
      column(['gone'], 'gone', 'text'),
    ];
    const observed: ObservedPath[] = [
      { path: ['total'], kind: 'text' },
      { path: ['orderId'], kind: 'bigint' },
      { path: ['order_id'], kind: 'boolean' },
      { path: ['gone'], kind: 'bigint' },
    ];
    const out = planRebuild(existing, observed, 10);
    expect(out).toEqual([
      column(['gone'], 'gone', 'text'),
      column(['orderId'], 'order_id', 'double'),
      column(['total'], 'total', 'text'),
      column(['order_id'], `order_id_${hash8(['order_id'])}`, 'boolean'),
    ]);
  });

  it('drops catalog paths absent from the data, and fills the cap with old paths first', () => {
    const existing = [column(['z'], 'z', 'text'), column(['y'], 'y', 'text'), column(['old'], 'old', 'text')];
    const observed = ['a', 'b', 'y', 'z'].map((p) => ({ path: [p], kind: 'text' as const }));
    expect(planRebuild(existing, observed, 3).map((c) => c.column)).toEqual(['y', 'z', 'a']);
  });

  it('any data: existing names kept, at most the cap, names distinct', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(observation, { selector: (o) => JSON.stringify(o.path), maxLength: 5 }),
        fc.array(observation, { maxLength: 20 }),
        fc.integer({ min: 0, max: 8 }),
        (seeds, observed, cap) => {
          const taken = new Set<string>();
          const existing = seeds.map((o) => {
            const c = column(o.path, name(o.path, taken), o.kind);
            taken.add(c.column);
            return c;
          });
          const out = planRebuild(existing, observed, cap);
          expect(out.length).toBeLessThanOrEqual(cap);
          expect(new Set(out.map((c) => c.column)).size).toBe(out.length);
          for (const c of out) {
            const old = existing.find((e) => JSON.stringify(e.path) === JSON.stringify(c.path));
            if (old) expect(c.column).toBe(old.column);
            else expect(taken.has(c.column)).toBe(false);
            expect(c.kind).toBe(c.wanted);
          }
        },
      ),
    );
  });
});

describe('planEventTables', () => {
  it('a thousand names under {max: 100}: exactly 100 tables counting existing ones, all distinct', () => {
    const names = Array.from({ length: 1000 }, (_, i) => (i % 3 === 0 ? `Event ${i}` : `event_${i}`));
    const existing = new Map([
      ['Event 0', 'event_0'],
      ['Legacy', 'legacy'],
    ]);
    const added = planEventTables(existing, names, { max: 100 });
    expect(added.size).toBe(98);
    expect(added.has('Event 0')).toBe(false);
    expect([...added.keys()]).toEqual(names.filter((n) => n !== 'Event 0').slice(0, 98));
    const tables = [...existing.values(), ...added.values()];
    expect(new Set(tables).size).toBe(100);
    for (const t of added.values()) {
      expect(RESERVED_TABLES.has(t)).toBe(false);
      expect(t).toMatch(/^[a-z0-9_]{1,63}$/);
    }
  });

  it('names that collide get distinct tables; reserved names are prefixed; repeats count once', () => {
    const added = planEventTables(new Map(), ['Order Completed', 'order_completed', 'Users', 'Users'], {
      max: 10,
    });
    expect([...added]).toEqual([
      ['Order Completed', 'order_completed'],
      ['order_completed', `order_completed_${hash8(['order_completed'])}`],
      ['Users', '_users'],
    ]);
  });

  it('under {allow}: exactly the allowed names that are not assigned yet', () => {
    const added = planEventTables(new Map([['A', 'a']]), ['A', 'B', 'C', 'D'], { allow: ['A', 'C', 'X'] });
    expect([...added]).toEqual([['C', 'c']]);
  });

  it('no new table once existing ones reach the cap', () => {
    expect(planEventTables(new Map([['A', 'a']]), ['B'], { max: 1 }).size).toBe(0);
  });
});
