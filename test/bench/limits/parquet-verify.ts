/**
 * Reads a written Parquet file back with DuckDB (a reader independent of every writer but
 * one) and compares it with PostgreSQL: column types, whole-file counts and a digest of
 * every value, and each value of a sample (the tricky rows plus random ones), NULL and ''
 * told apart.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import type pg from 'pg';
import { TRICKY_ID_PREFIX } from './parquet-rows.ts';

/** What PostgreSQL holds: counts, digest, and the sample rows as canonical text. */
export interface Expected {
  aggregates: Record<string, string>;
  sample: Map<string, (string | null)[]>;
}

const COLUMNS = [
  'id',
  'occurred_at',
  'received_at',
  'service',
  'type',
  'user_id',
  'message',
  'metadata',
  'anonymized',
];

/** The DuckDB types an archive reader should see. */
const TYPES: Record<string, string> = {
  id: 'VARCHAR',
  occurred_at: 'TIMESTAMP WITH TIME ZONE',
  received_at: 'TIMESTAMP WITH TIME ZONE',
  service: 'VARCHAR',
  type: 'VARCHAR',
  user_id: 'VARCHAR',
  message: 'VARCHAR',
  metadata: 'JSON',
  anonymized: 'BOOLEAN',
};

// Canonical text of each column: timestamps as integer microseconds, booleans true/false.
const PG_CANON = [
  'id::text',
  '(extract(epoch FROM occurred_at) * 1000000)::int8::text',
  '(extract(epoch FROM received_at) * 1000000)::int8::text',
  'service',
  'type',
  'user_id',
  'message',
  'metadata::text',
  'anonymized::text',
];
const DUCK_CANON = [
  'id::VARCHAR',
  'epoch_us(occurred_at)::VARCHAR',
  'epoch_us(received_at)::VARCHAR',
  'service',
  'type',
  'user_id',
  'message',
  'metadata::VARCHAR',
  'anonymized::VARCHAR',
];

/** Sum over rows of 60 bits of an MD5 of all values (NULL as \x1e), the same in both systems. */
const digest = (canon: string[], hex: (md5: string) => string) =>
  `sum(${hex(`md5(concat_ws(chr(31), ${canon.map((c) => `coalesce(${c}, chr(30))`).join(', ')}))`)})::VARCHAR`;

const aggregates = (canon: string[], strlen: string, hex: (md5: string) => string) => ({
  rows: 'count(*)::VARCHAR',
  user_id: 'count(user_id)::VARCHAR',
  message: 'count(message)::VARCHAR',
  metadata: 'count(metadata)::VARCHAR',
  anonymized: 'count(*) FILTER (WHERE anonymized)::VARCHAR',
  firstOccurred: `min(${canon[1]}::int8)::VARCHAR`,
  lastOccurred: `max(${canon[1]}::int8)::VARCHAR`,
  messageBytes: `coalesce(sum(${strlen}(message)), 0)::VARCHAR`,
  digest: digest(canon, hex),
});

const PG_AGG = aggregates(
  PG_CANON,
  'octet_length',
  (md5) => `('x' || lpad(substr(${md5}, 1, 15), 16, '0'))::bit(64)::int8`,
);
const DUCK_AGG = aggregates(DUCK_CANON, 'strlen', (md5) => `('0x' || substr(${md5}, 1, 15))::BIGINT`);

const select = (agg: Record<string, string>) =>
  Object.entries(agg)
    .map(([k, v]) => `${v} AS "${k}"`)
    .join(', ');

/** Reads the expected values once: aggregates of every row and the sample (tricky rows + `random` others). */
export async function expectedFromPg(client: pg.Client, table: string, random = 2_000): Promise<Expected> {
  const agg = await client.query<Record<string, string>>(
    `SELECT ${select(PG_AGG).replaceAll('::VARCHAR', '::text')} FROM ${table}`,
  );
  const sample = await client.query<(string | null)[]>({
    text: `SELECT ${PG_CANON.join(', ')} FROM ${table}
           WHERE id::text LIKE '${TRICKY_ID_PREFIX}%'
              OR id IN (SELECT id FROM ${table} TABLESAMPLE SYSTEM (1) ORDER BY random() LIMIT ${random})`,
    rowMode: 'array',
  });
  return {
    aggregates: agg.rows[0] ?? {},
    sample: new Map(sample.rows.map((r) => [String(r[0]), r])),
  };
}

const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** What reading a file back found: values that differ, types other than wanted (empty: none). */
export interface ReadBack {
  valueProblems: string[];
  typeProblems: string[];
  /** The column types DuckDB saw. */
  types: string;
}

export async function verifyParquet(file: string, expected: Expected): Promise<ReadBack> {
  const db = await DuckDBInstance.create(':memory:', { autoinstall_known_extensions: 'false' });
  const duck = await db.connect();
  const problems: string[] = [];
  const typeProblems: string[] = [];
  try {
    await duck.run(`SET TimeZone = 'UTC'`);
    const source = `read_parquet(${sqlString(file)})`;
    const described = (await duck.runAndReadAll(`DESCRIBE SELECT * FROM ${source}`)).getRowObjectsJson();
    const types = Object.fromEntries(described.map((r) => [String(r.column_name), String(r.column_type)]));
    for (const c of COLUMNS)
      if (types[c] !== TYPES[c]) typeProblems.push(`${c} ${types[c] ?? 'missing'}, want ${TYPES[c]}`);

    const agg =
      (await duck.runAndReadAll(`SELECT ${select(DUCK_AGG)} FROM ${source}`)).getRowObjectsJson()[0] ?? {};
    for (const [k, want] of Object.entries(expected.aggregates))
      if (String(agg[k]) !== String(want)) problems.push(`${k}: ${String(agg[k])}, want ${want}`);

    const ids = [...expected.sample.keys()].map(sqlString).join(', ');
    const got = (
      await duck.runAndReadAll(`SELECT ${DUCK_CANON.join(', ')} FROM ${source} WHERE id::VARCHAR IN (${ids})`)
    ).getRowsJson() as (string | null)[][];
    if (got.length !== expected.sample.size)
      problems.push(`sample: ${got.length} rows, want ${expected.sample.size}`);
    const wrong = new Map<string, string>();
    for (const row of got) {
      const want = expected.sample.get(String(row[0]));
      COLUMNS.forEach((c, i) => {
        if (want && row[i] !== want[i] && !wrong.has(c))
          wrong.set(c, `${c} of ${row[0]}: ${JSON.stringify(row[i])}, want ${JSON.stringify(want[i])}`);
      });
    }
    problems.push(...wrong.values());
    return {
      valueProblems: problems,
      typeProblems,
      types: COLUMNS.map((c) => `${c} ${types[c]}`).join(', '),
    };
  } finally {
    duck.closeSync();
    db.closeSync();
  }
}
