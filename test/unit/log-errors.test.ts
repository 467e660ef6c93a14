import { DrizzleQueryError } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { errorFields, errorSummary } from '../../src/telemetry/log-errors.ts';

/** pg's error for a value PostgreSQL refused: its message quotes the value. */
class DatabaseError extends Error {
  readonly code: string;
  readonly severity = 'ERROR';
  constructor(message: string, code: string) {
    super(message);
    this.code = code;
  }
}

describe('errors in logs', () => {
  it('a database error is its class and SQLSTATE: never the statement, its parameters or the value', () => {
    const pgError = new DatabaseError('invalid input syntax for type uuid: "subject-secret"', '22P02');
    const err = new DrizzleQueryError('select * from events where user_id = $1', ['subject-secret'], pgError);
    const fields = errorFields(err, { stack: true });
    expect(fields).toEqual({ type: 'DrizzleQueryError', cause: { type: 'DatabaseError', code: '22P02' } });
    expect(errorSummary(err)).toBe('DrizzleQueryError: DatabaseError 22P02');
    expect(JSON.stringify(fields)).not.toContain('subject-secret');
  });

  it('anything else keeps its class, code and message, with statement text cut', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    expect(errorFields(refused)).toEqual({
      type: 'Error',
      code: 'ECONNREFUSED',
      message: 'connect ECONNREFUSED 127.0.0.1:5432',
    });
    const wrapped = errorFields('Error: Failed query: select $1\nparams: subject-secret');
    expect(JSON.stringify(wrapped)).not.toContain('subject-secret');
    const bug = errorFields(new TypeError('x is undefined'), { stack: true });
    expect(bug).toMatchObject({
      type: 'TypeError',
      message: 'x is undefined',
      stack: expect.stringContaining('TypeError'),
    });
  });
});
