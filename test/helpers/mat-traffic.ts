import { expect } from 'vitest';
import { call, type Stack } from './stack.ts';

/**
 * Generated Segment traffic for the materialisation tests (ARCHITECTURE §12, §17): identifies
 * whose traits change over time and arrive out of order, int → float → string conflicts,
 * nested objects and arrays, property names that collide, are reserved, start with a digit,
 * are not ASCII or run past 63 bytes, a wide event with hundreds of properties, many event
 * names, pages, screens, groups and aliases, and duplicate message ids. Deterministic for a seed.
 */

export interface TrafficOptions {
  seed: number;
  users: number;
  /** Distinct `Event N` names, one track each. */
  eventNames: number;
  /** Properties of the one `Wide Event`. */
  wideProperties: number;
  /** The subjects' id prefix (one run's ids are its own). */
  prefix: string;
}

export type SegmentCall = Record<string, unknown> & { messageId: string };

/** A small, seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffle<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

const LONG = 'a_property_name_that_runs_well_past_the_sixty_three_bytes_postgres_allows_';

export function segmentTraffic(o: TrafficOptions): SegmentCall[] {
  const random = prng(o.seed);
  const now = Date.now();
  // Within the last two days, to the microsecond-free millisecond.
  const at = () => new Date(now - Math.floor(random() * 2 * 86_400_000) - 60_000).toISOString();
  let n = 0;
  const id = () => `${o.prefix}-m-${n++}`;
  const calls: SegmentCall[] = [];
  for (let u = 0; u < o.users; u++) {
    const userId = `${o.prefix}-u${u}`;
    const anonymousId = `${o.prefix}-a${u}`;
    for (let k = 0; k < 3; k++) {
      const age = [30 + u, 30.5 + u, `thirty-${u}`][(u + k) % 3];
      calls.push({
        type: 'identify',
        messageId: id(),
        userId,
        anonymousId,
        timestamp: at(),
        traits: {
          email: `${userId}@example.com`,
          plan: ['free', 'pro', 'team'][Math.floor(random() * 3)],
          age,
          address: { city: ['Lyon', 'Oslo', 'Lima'][k], zip: `0${u}${k}` },
          tags: ['a', String(k)],
          'Favourite Colour': 'blue',
          favourite_colour: k,
          select: true,
          '1st_seen': k,
          naïve: 'é',
          [`${LONG}one`]: k,
          [`${LONG}two`]: -k,
          ...(k === 2 ? { late: 'only-in-one' } : {}),
        },
      });
    }
    calls.push({
      type: 'alias',
      messageId: id(),
      userId,
      previousId: `${o.prefix}-old${u}`,
      timestamp: at(),
    });
    calls.push({
      type: 'page',
      messageId: id(),
      anonymousId,
      name: 'Home',
      properties: { path: '/', referrer: null },
      timestamp: at(),
    });
    calls.push({
      type: 'screen',
      messageId: id(),
      userId,
      name: 'Cart',
      properties: { items: u },
      timestamp: at(),
    });
    calls.push({
      type: 'group',
      messageId: id(),
      userId,
      groupId: `${o.prefix}-g${u % 4}`,
      traits: { name: `Team ${u % 4}`, employees: u % 4 === 0 ? 'many' : 10 + u },
      timestamp: at(),
    });
    for (let k = 0; k < 4; k++) {
      calls.push({
        type: 'track',
        messageId: id(),
        userId: k % 2 === 0 ? userId : undefined,
        anonymousId,
        event: 'Order Completed',
        timestamp: at(),
        properties: {
          total: [12, 12.5, 'twelve', true][(u + k) % 4],
          currency: 'EUR',
          'Order Id': `o-${u}-${k}`,
          order_id: u * 10 + k,
          orderId: `x${k}`,
          shipping: { method: 'post', cost: { amount: 4.9, currency: 'EUR' } },
          products: [{ sku: 'p1', qty: 1 }],
          id: 'a property named id',
        },
      });
    }
  }
  for (let e = 0; e < o.eventNames; e++) {
    calls.push({
      type: 'track',
      messageId: id(),
      anonymousId: `${o.prefix}-a${e % o.users}`,
      event: `Event ${e}`,
      properties: { n: e },
      timestamp: at(),
    });
  }
  const wide: Record<string, number> = {};
  for (let p = 0; p < o.wideProperties; p++) wide[`prop_${String(p).padStart(3, '0')}`] = p;
  // Sent first and oldest, so that their tables are among the first assigned.
  const early = new Date(now - 2 * 86_400_000 - 3_600_000).toISOString();
  const first: SegmentCall[] = [
    {
      type: 'track',
      messageId: id(),
      userId: `${o.prefix}-u0`,
      event: 'Wide Event',
      properties: wide,
      timestamp: early,
    },
    {
      type: 'track',
      messageId: id(),
      userId: `${o.prefix}-u0`,
      event: 'Order Completed',
      properties: { total: 1 },
      timestamp: early,
    },
  ];
  // Duplicates: every 20th call sent again, as a retrying SDK would.
  const duplicates = calls.filter((_, i) => i % 20 === 0).map((c) => ({ ...c }));
  return [...first, ...shuffle([...calls, ...duplicates], random)];
}

/** Sends calls through `POST /v1/batch` (Basic auth with the write key), `per` a request. */
export async function sendBatches(
  stack: Stack,
  writeKey: string,
  calls: readonly SegmentCall[],
  per = 250,
): Promise<void> {
  const authorization = `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;
  for (let i = 0; i < calls.length; i += per) {
    const res = await call(stack.url, '/v1/batch', {
      key: null,
      headers: { authorization },
      body: { batch: calls.slice(i, i + per) },
    });
    expect(res.status).toBe(200);
    expect(res.body.rejected).toEqual([]);
  }
}
