import { describe, expect, it } from 'vitest';
import { linksOf } from '../../src/worker/subject-links.ts';

const e = (fields: Record<string, unknown>) =>
  JSON.stringify({ id: '1', service: 's', type: 'page', receivedAt: '2026-01-01T00:00:10.000Z', ...fields });

describe('linksOf (the links a batch makes, §12)', () => {
  it('a Segment alias call (segmentType alias) links like a native alias event', () => {
    expect(
      linksOf([e({ type: 'alias', userId: 'u', metadata: { segmentType: 'alias', previousId: 'p' } })]),
    ).toEqual([{ from: 'p', to: 'u', via: 'alias', keyId: null }]);
  });

  it('an alias links previousId to userId, and its anonymousId too', () => {
    expect(
      linksOf([
        e({ type: 'alias', userId: 'u', anonymousId: 'a', keyId: 'k1', metadata: { previousId: 'p' } }),
      ]),
    ).toEqual([
      { from: 'p', to: 'u', via: 'alias', keyId: 'k1' },
      { from: 'a', to: 'u', via: 'alias', keyId: 'k1' },
    ]);
  });

  it('any event with a userId and an anonymousId links them, each pair once per batch', () => {
    const links = linksOf([
      e({ userId: 'u', anonymousId: 'a' }),
      e({ userId: 'u', anonymousId: 'a', type: 'track' }),
      e({ userId: 'v', anonymousId: 'a' }),
    ]);
    expect(links).toEqual([
      { from: 'a', to: 'u', via: 'anonymous_id', keyId: null },
      { from: 'a', to: 'v', via: 'anonymous_id', keyId: null },
    ]);
  });

  it('makes no link from events without both ids, from ids only inside metadata, or from a bad alias', () => {
    expect(
      linksOf([
        e({ userId: 'u' }),
        e({ anonymousId: 'a' }),
        e({ userId: 'u', metadata: { anonymousId: 'a' } }),
        e({ type: 'alias', userId: 'u', metadata: { previousId: 7 } }),
        e({ type: 'alias', metadata: { previousId: 'p' } }),
        e({ type: 'alias', userId: 'u', metadata: { previousId: 'u' } }),
        e({ type: 'alias', userId: 'u', metadata: { previousId: 'enc:v1:k:abc' } }),
        e({ type: 'alias', userId: 'u', metadata: { previousId: 'p'.repeat(257) } }),
        e({ type: 'alias', userId: 'u', metadata: { previousId: '' } }),
        // A Segment track call named "alias" that happens to carry a previousId field.
        e({ type: 'alias', userId: 'u', metadata: { segmentType: 'track', previousId: 'p' } }),
        '{"type":"alias", broken',
      ]),
    ).toEqual([]);
  });
});
