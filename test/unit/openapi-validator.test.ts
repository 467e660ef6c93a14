import { describe, expect, it } from 'vitest';
import { checkResponse, findOperation, UndocumentedResponse } from '../helpers/openapi.ts';

// The validator integration tests run every response through: it must refuse what the
// document does not describe, or it proves nothing.

const json = 'application/json';
const ID = '0b2f9e2c-1111-4222-8333-444455556666';
const accepted = JSON.stringify({ id: ID, status: 'accepted' });

describe('checkResponse', () => {
  it('accepts documented answers: status, content type and body', () => {
    expect(() =>
      checkResponse({ method: 'POST', path: '/v1/events', status: 202, contentType: json, text: accepted }),
    ).not.toThrow();
    const refusal = JSON.stringify({ error: { code: 'invalid_event', message: 'm', requestId: 'r' } });
    expect(() =>
      checkResponse({ method: 'POST', path: '/v1/events', status: 400, contentType: json, text: refusal }),
    ).not.toThrow();
    expect(() =>
      checkResponse({
        method: 'DELETE',
        path: `/v1/admin/keys/${ID}`,
        status: 204,
        contentType: null,
        text: '',
      }),
    ).not.toThrow();
    const metrics = {
      method: 'GET',
      path: '/metrics',
      status: 200,
      contentType: 'text/plain; version=0.0.4',
    };
    expect(() => checkResponse({ ...metrics, text: '# HELP x\nx 1\n' })).not.toThrow();
  });

  it('rejects a status the operation does not document', () => {
    // POST /v1/events answers 202, never 200 or 201.
    for (const status of [200, 201]) {
      expect(() =>
        checkResponse({ method: 'POST', path: '/v1/events', status, contentType: json, text: accepted }),
      ).toThrow(UndocumentedResponse);
    }
    // /health/live cannot be refused for a key: no 401.
    const unauthorized = JSON.stringify({ error: { code: 'unauthorized', message: 'm' } });
    expect(() =>
      checkResponse({
        method: 'GET',
        path: '/health/live',
        status: 401,
        contentType: json,
        text: unauthorized,
      }),
    ).toThrow(/status 401 is not documented/);
  });

  it('rejects a body of the wrong shape', () => {
    const post = { method: 'POST', path: '/v1/events', status: 202, contentType: json } as const;
    expect(() => checkResponse({ ...post, text: JSON.stringify({ id: ID, status: 'maybe' }) })).toThrow(
      /does not match/,
    );
    expect(() =>
      checkResponse({ ...post, text: JSON.stringify({ id: 'not-a-uuid', status: 'accepted' }) }),
    ).toThrow(UndocumentedResponse);
    expect(() =>
      checkResponse({ ...post, text: JSON.stringify({ id: ID, status: 'accepted', extra: 1 }) }),
    ).toThrow(UndocumentedResponse);
    expect(() => checkResponse({ ...post, text: 'not json' })).toThrow(/not JSON/);
    // A refusal must carry the contract's error body, not e.g. zod-openapi's default one.
    const zodDefault = JSON.stringify({ success: false, error: { name: 'ZodError', message: '[]' } });
    expect(() => checkResponse({ ...post, status: 400, text: zodDefault })).toThrow(UndocumentedResponse);
  });

  it('rejects an undeclared content type and a body where none is documented', () => {
    expect(() =>
      checkResponse({
        method: 'POST',
        path: '/v1/events',
        status: 202,
        contentType: 'text/html',
        text: accepted,
      }),
    ).toThrow(/content type/);
    expect(() =>
      checkResponse({
        method: 'DELETE',
        path: `/v1/admin/keys/${ID}`,
        status: 204,
        contentType: json,
        text: '{}',
      }),
    ).toThrow(/a body where/);
  });

  it('allows a path no operation serves only a refusal with the error body', () => {
    const notFound = JSON.stringify({ error: { code: 'not_found', message: 'no route' } });
    expect(() =>
      checkResponse({ method: 'GET', path: '/nope', status: 404, contentType: json, text: notFound }),
    ).not.toThrow();
    expect(() =>
      checkResponse({ method: 'GET', path: '/nope', status: 200, contentType: json, text: '{}' }),
    ).toThrow(/no operation/);
  });

  it('matches templates, ignoring the query, preferring the most specific', () => {
    expect(findOperation('GET', '/v1/users/u-1/events/export?x=1')?.template).toBe(
      '/v1/users/{userId}/events/export',
    );
    expect(findOperation('GET', '/v1/admin/retention/runs?limit=2')?.template).toBe(
      '/v1/admin/retention/runs',
    );
    expect(findOperation('HEAD', '/health')?.template).toBe('/health');
    expect(findOperation('PATCH', '/v1/events')).toBeUndefined();
  });
});
