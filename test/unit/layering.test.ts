import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SRC = join(ROOT, 'src');

/** Every TypeScript file under src/, as a path relative to the repository (`src/…`). */
function sourceFiles(): string[] {
  return (readdirSync(SRC, { recursive: true, encoding: 'utf8' }) as string[])
    .filter((f) => f.endsWith('.ts'))
    .map((f) => relative(ROOT, join(SRC, f)).split('\\').join('/'))
    .sort();
}

const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

/** Module specifiers a file imports (static, re-exports and dynamic `import()`). */
function importsOf(text: string): string[] {
  const specs: string[] = [];
  for (const m of text.matchAll(/\b(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) specs.push(m[1] as string);
  return specs;
}

const SQL_START = String.raw`(?:SELECT|INSERT|UPDATE|DELETE|COPY|WITH|BEGIN|CREATE|ALTER|DROP|TRUNCATE|SET)\b`;

/**
 * `.query(` calls whose statement is written in place: a string or template literal opening
 * with an SQL keyword, or a pg-copy-streams `copyTo(`/`copyFrom(` of one. Hono's
 * `c.req.query('limit')` names a parameter, not a statement, and is not matched.
 */
function inlineQueries(text: string): string[] {
  const call = new RegExp(
    String.raw`\.query\s*(?:<[^()]*?>)?\s*\(\s*(?:copy(?:To|From)\s*\(\s*)?[\`'"]\s*${SQL_START}[^\n]*`,
    'gi',
  );
  return [...text.matchAll(call)].map((m) => located(text, m));
}

/**
 * Literals that hold a PostgreSQL statement wherever they are (a constant later handed to
 * `.query`): a statement keyword (upper case, as this code writes SQL) followed by the clause that
 * makes it one, so prose such as "select a key from" is not taken for SQL.
 */
function sqlLiterals(text: string): string[] {
  const statement =
    /[`'"]\s*(?:SELECT\s[^`'"]*?\bFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+(?:\s+\w+)?\s+SET\s|DELETE\s+FROM\s|COPY\s*\(|COPY\s+\w+\s+(?:FROM|TO)\s|WITH\s+(?:RECURSIVE\s+)?\w+\s+AS\s*\()[^\n]*/g;
  return [...text.matchAll(statement)].map((m) => located(text, m));
}

/** `line N: <the match, on one line>`, for a failure message that points at the code. */
function located(text: string, m: RegExpMatchArray): string {
  const line = text.slice(0, m.index).split('\n').length;
  return `line ${line}: ${m[0].replace(/\s+/g, ' ').trim()}`;
}

/**
 * Files outside src/store/ allowed to hold statement text, and why. DuckDB runs its own SQL
 * over Parquet files in process (`conn.run`, never `.query`): that is the archive's format,
 * not PostgreSQL.
 */
const SQL_TEXT_ALLOWED = new Set([
  'src/archive/parquet.ts',
  'src/materialize/dest-duckdb.ts',
  'src/materialize/dest-parquet.ts',
]);

describe('layering (STYLE.md: a module reaches only downstream; SQL lives in store/)', () => {
  const files = sourceFiles();

  it('finds the source files', () => {
    expect(files).toContain('src/store/events.repo.ts');
    expect(files.length).toBeGreaterThan(50);
  });

  it('no file in src/compliance/ imports from src/retention/', () => {
    const offending = files
      .filter((f) => f.startsWith('src/compliance/'))
      .flatMap((f) =>
        importsOf(read(f))
          .filter((s) => /(^|\/)retention\//.test(s))
          .map((s) => `${f}: ${s}`),
      );
    expect(offending).toEqual([]);
  });

  it('no file in src/http/ imports from src/worker/', () => {
    const offending = files
      .filter((f) => f.startsWith('src/http/'))
      .flatMap((f) =>
        importsOf(read(f))
          .filter((s) => /(^|\/)worker\//.test(s))
          .map((s) => `${f}: ${s}`),
      );
    expect(offending).toEqual([]);
  });

  it('no file outside src/store/ runs a statement it writes itself', () => {
    const offending = files
      .filter((f) => !f.startsWith('src/store/'))
      .flatMap((f) => inlineQueries(read(f)).map((q) => `${f}: ${q.trim()}`));
    expect(offending).toEqual([]);
  });

  it('no file outside src/store/ holds PostgreSQL statement text', () => {
    const offending = files
      .filter((f) => !f.startsWith('src/store/') && !SQL_TEXT_ALLOWED.has(f))
      .flatMap((f) => sqlLiterals(read(f)).map((q) => `${f}: ${q.trim()}`));
    expect(offending).toEqual([]);
  });

  it('the detectors catch what they are meant to, and leave Hono query parameters alone', () => {
    expect(
      importsOf(`import { x } from '../retention/runs.ts';\nconst m = await import('../worker/a.ts');`),
    ).toEqual(['../retention/runs.ts', '../worker/a.ts']);
    expect(inlineQueries(`await deps.pool.query('SELECT 1');`)).toHaveLength(1);
    expect(
      inlineQueries('const { rows } = await pool.query<{ at: Date | null }>(\n  `DELETE FROM x`,\n);'),
    ).toHaveLength(1);
    expect(inlineQueries('client.query(copyTo(`COPY (SELECT 1) TO STDOUT`))')).toHaveLength(1);
    expect(inlineQueries(`c.req.query('limit'); c.req.query();`)).toEqual([]);
    expect(sqlLiterals('const Q = `SELECT id FROM events WHERE x`;')).toHaveLength(1);
    expect(sqlLiterals(`'UPDATE events e SET a = 1'`)).toHaveLength(1);
    expect(sqlLiterals(`const VERBS = { DELETE: 'delete' }; // \`DELETE /v1/users/:userId/events\``)).toEqual(
      [],
    );
  });
});
