import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry, type LiveEntry, type StoredHeader } from '../../src/live/entry.ts';
import { type CloseReason, LiveListener } from '../../src/live/listener.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';

const open: LiveListener[] = [];
afterEach(() => {
  for (const l of open.splice(0)) l.close('client_gone');
});

function listener(
  opts: { maxPerSecond?: number; maxBufferedBytes?: number; services?: string[] | null } = {},
) {
  const metrics = new Metrics(new Registry());
  const closed: CloseReason[] = [];
  const l = new LiveListener({
    viewer: { keyId: 'me', services: opts.services ?? null },
    filters: { service: [], type: [], outcome: [] },
    maxPerSecond: opts.maxPerSecond ?? 50,
    heartbeatMs: 60_000,
    ...(opts.maxBufferedBytes ? { maxBufferedBytes: opts.maxBufferedBytes } : {}),
    metrics,
    onClose: (_l, reason) => closed.push(reason),
  });
  open.push(l);
  return { l, metrics, closed };
}

/** An entry of `n` accepted records of service `s`, each event `{"n":i,…}` padded to `pad` bytes. */
function entry(id: string, n: number, s = 'a', pad = 0): LiveEntry {
  const request = { keyId: 'k', keyServices: null, fields: '"requestId":"r"' };
  const headers: StoredHeader[] = Array.from({ length: n }, (_, i) => ['accepted', s, 't', 0, i, `id-${i}`]);
  const rests = Array.from({ length: n }, (_, i) =>
    JSON.stringify({ n: i, entry: id, pad: 'x'.repeat(pad) }),
  );
  return decodeEntry(
    id,
    encodeEntry([request], headers, rests.join('\n')).map((f) => Buffer.from(f)),
  ) as LiveEntry;
}

/** Everything the stream holds so far, as frames `[event, id, data]`. */
async function frames(l: LiveListener): Promise<[string, string | undefined, unknown][]> {
  const reader = l.stream.getReader();
  let text = '';
  const decoder = new TextDecoder();
  for (;;) {
    const next = await Promise.race([
      reader.read(),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 20)),
    ]);
    if (!next || next.done) break;
    text += decoder.decode(next.value);
  }
  reader.releaseLock();
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((block) => {
      const field = (name: string) =>
        block
          .split('\n')
          .find((line) => line.startsWith(`${name}: `))
          ?.slice(name.length + 2);
      const data = field('data');
      return [field('event') ?? '', field('id'), data === undefined ? undefined : JSON.parse(data)];
    });
}

describe('a live listener', () => {
  it('starts with ready and sends each wanted record as an outcome frame with ENTRY/INDEX ids', async () => {
    const { l } = listener({ services: ['a'] });
    l.ready(false);
    l.offer(entry('5-0', 2));
    l.offer(entry('6-0', 1, 'b'));
    const got = await frames(l);
    expect(got.map(([e, id]) => [e, id])).toEqual([
      ['ready', undefined],
      ['outcome', '5-0/0'],
      ['outcome', '5-0/1'],
    ]);
    expect(got[1]?.[2]).toMatchObject({
      outcome: 'accepted',
      index: 0,
      event: { n: 0, entry: '5-0', pad: '' },
    });
  });

  it('while replaying holds live entries back, then sends those the replay did not cover, once', async () => {
    const { l } = listener();
    l.beginReplay();
    l.offer(entry('7-0', 1));
    l.offer(entry('8-0', 1));
    l.offer(entry('5-0', 3), true, 2);
    l.offer(entry('7-0', 1), true);
    l.endReplay();
    l.offer(entry('8-0', 1));
    l.offer(entry('9-0', 1));
    expect((await frames(l)).map(([, id]) => id)).toEqual(['5-0/2', '7-0/0', '8-0/0', '9-0/0']);
  });

  it('cuts off a client that does not read, counting the frame it could not send', async () => {
    const { l, metrics, closed } = listener({ maxBufferedBytes: 10_000 });
    for (let i = 0; i < 20 && !l.closed; i++) l.offer(entry(`${10 + i}-0`, 1, 'a', 2_000));
    expect(closed).toEqual(['slow_client']);
    expect(l.dropped).toBe(1);
    expect(
      (await metrics.registry.getSingleMetric('tributary_live_frames_dropped_total')?.get())?.values[0]
        ?.value,
    ).toBe(1);
    // What was queued is still delivered; then the stream ends.
    expect((await frames(l)).length).toBe(l.sent);
  });

  it('counts every wanted record in its stats, sampled or not, and not replayed ones', async () => {
    const { l } = listener({ maxPerSecond: 2 });
    l.offer(entry('5-0', 10));
    l.offer(entry('4-0', 3), true);
    l.offer(entry('6-0', 3, 'b'), true);
    await new Promise((r) => setTimeout(r, 1_050));
    const got = await frames(l);
    expect(got.filter(([e]) => e === 'outcome')).toHaveLength(2);
    expect(got.find(([e]) => e === 'stats')?.[2]).toMatchObject({ accepted: 10, refused: 0 });
    expect(got.find(([e]) => e === 'sampling')?.[2]).toMatchObject({ maxPerSecond: 2 });
  });
});
