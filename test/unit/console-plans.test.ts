import { describe, expect, it } from 'vitest';
import { parseJsonObject, verdictOf } from '../../src/console/web/plans.ts';

describe('console: tracking plans page', () => {
  it('reads a typed JSON object, and says why anything else is not one', () => {
    expect(parseJsonObject('{"type":"object"}')).toEqual({ ok: true, value: { type: 'object' } });
    for (const text of ['[]', 'null', '"x"', '3']) {
      expect(parseJsonObject(text)).toEqual({ ok: false, message: 'it must be an object, {…}' });
    }
    const broken = parseJsonObject('{"type": ');
    expect(broken.ok).toBe(false);
    if (!broken.ok) expect(broken.message).toMatch(/JSON/);
  });

  it('tells a refused, a flagged and an accepted event apart, with their paths', () => {
    const details = [{ path: 'metadata.total', code: 'out_of_range', message: 'must be >= 0' }];
    expect(
      verdictOf({
        results: [{ index: 0, status: 'rejected', code: 'schema_violation', message: 'no', details }],
      }),
    ).toEqual({
      kind: 'refused',
      headline: 'Would be refused:',
      code: 'schema_violation',
      message: 'no',
      details,
    });
    expect(
      verdictOf({
        results: [
          { index: 0, status: 'accepted', warning: { code: 'unknown_event_type', message: 'unplanned' } },
        ],
      }),
    ).toEqual({
      kind: 'flagged',
      headline: 'Would be stored, flagged:',
      code: 'unknown_event_type',
      message: 'unplanned',
      details: [],
    });
    expect(verdictOf({ results: [{ index: 0, status: 'duplicate' }] })).toEqual({
      kind: 'accepted',
      headline: 'Would be answered duplicate (its id was seen recently); it passes the plan.',
      details: [],
    });
    expect(verdictOf({ results: [] })).toBeUndefined();
  });
});
