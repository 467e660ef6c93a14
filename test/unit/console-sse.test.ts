import { describe, expect, it } from 'vitest';
import { SseParser } from '../../src/console/web/sse.ts';

// The console reads the live view's event stream with this parser (fetch() and a stream
// reader, since EventSource cannot send the key in a header): what it must get right is
// what a network hands it, chunks cut anywhere, and the three line endings the format allows.

const STREAM = [
  'event: ready',
  'data: {"maxPerSecond":50,"heartbeatSeconds":15}',
  '',
  ': ping',
  '',
  'event: outcome',
  'id: 1764885000000-0/3',
  'data: {"outcome":"refused",',
  'data: "index":3}',
  '',
  'retry: 2500',
  'event: stats',
  'data:{"accepted":2}',
  '',
  'data: plain',
  '',
  '',
].join('\n');

const EXPECTED = [
  { event: 'ready', data: '{"maxPerSecond":50,"heartbeatSeconds":15}', id: '' },
  { event: 'outcome', data: '{"outcome":"refused",\n"index":3}', id: '1764885000000-0/3' },
  // The id stays until another one comes: it is what a reconnect resumes from.
  { event: 'stats', data: '{"accepted":2}', id: '1764885000000-0/3' },
  { event: 'message', data: 'plain', id: '1764885000000-0/3' },
];

function parseInChunks(text: string, cuts: number[]) {
  const parser = new SseParser();
  const frames = [];
  let from = 0;
  for (const cut of [...cuts, text.length]) {
    frames.push(...parser.push(text.slice(from, cut)));
    from = cut;
  }
  return { frames, parser };
}

describe('the console’s event-stream parser', () => {
  it('reads frames, multi-line data, ids, retry, and drops comments', () => {
    const { frames, parser } = parseInChunks(STREAM, []);
    expect(frames).toEqual(EXPECTED);
    expect(parser.lastEventId).toBe('1764885000000-0/3');
    expect(parser.retryMs).toBe(2500);
  });

  for (const [name, eol] of [
    ['\\n', '\n'],
    ['\\r\\n', '\r\n'],
    ['\\r', '\r'],
  ] as const) {
    it(`gives the same frames wherever the chunks are cut, with ${name} line endings`, () => {
      const text = STREAM.replaceAll('\n', eol);
      for (let cut = 0; cut <= text.length; cut++) {
        expect(parseInChunks(text, [cut]).frames, `cut at ${cut}`).toEqual(EXPECTED);
      }
      // One character at a time: the worst a slow network does.
      const everyChar = Array.from({ length: text.length }, (_, i) => i);
      expect(parseInChunks(text, everyChar).frames).toEqual(EXPECTED);
    });
  }

  it('dispatches nothing for a frame without data, or one not yet ended by a blank line', () => {
    const parser = new SseParser();
    expect(parser.push('event: gap\n\n')).toEqual([]);
    expect(parser.push('event: gap\ndata: {}\n')).toEqual([]);
    expect(parser.push('\n')).toEqual([{ event: 'gap', data: '{}', id: '' }]);
  });

  it('ignores an id holding NUL and a retry that is not a number', () => {
    const parser = new SseParser();
    parser.push('id: a\n\nid: b\0c\nretry: soon\ndata: x\n\n');
    expect(parser.lastEventId).toBe('a');
    expect(parser.retryMs).toBeUndefined();
  });
});
