/**
 * The archive's Parquet writer in JavaScript, reading PostgreSQL through a cursor in chunks
 * of FETCH_ROWS, every value as PostgreSQL's text:
 *
 *   wasm       (b) apache-arrow record batches → parquet-wasm's streaming writer
 *              (transformParquetStream; row groups flushed as they fill)
 *   hyparquet  (c) hyparquet-writer's ParquetWriter, one row group per ROW_GROUP_ROWS rows,
 *              zstd from node:zlib
 *   pgcursor   baseline: the FETCH loop alone, rows dropped
 */
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { zstdCompressSync } from 'node:zlib';
import {
  Bool,
  type Data,
  Field,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  TimestampMicrosecond,
  tableToIPC,
  Utf8,
  vectorFromArray,
} from 'apache-arrow';
import { fileWriter, ParquetWriter, type SchemaElement } from 'hyparquet-writer';
import * as wasm from 'parquet-wasm';
import type pg from 'pg';
import { ROW_GROUP_ROWS } from './parquet-duckdb.ts';

/** Rows per cursor FETCH. */
const FETCH_ROWS = 10_000;

/**
 * The cursor of `wasm` and `hyparquet`: every column as PostgreSQL's text (no Date parsing,
 * which would drop microseconds), timestamps as integer microseconds since the epoch.
 */
const pgCursorSelect = (table: string) =>
  `SELECT id::text,
          (extract(epoch FROM occurred_at) * 1000000)::int8,
          (extract(epoch FROM received_at) * 1000000)::int8,
          service, type, user_id, message, metadata::text, anonymized
   FROM ${table} ORDER BY occurred_at, id`;

type TextRow = (string | null)[];
const asText = { getTypeParser: () => (v: string) => v };

/** Rows of the cursor, FETCH_ROWS at a time, inside a read-only transaction. */
async function* fetchChunks(client: pg.Client, table: string): AsyncGenerator<TextRow[]> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await client.query(`DECLARE archive_rows NO SCROLL CURSOR FOR ${pgCursorSelect(table)}`);
  try {
    for (;;) {
      const { rows } = await client.query<TextRow>({
        text: `FETCH ${FETCH_ROWS} FROM archive_rows`,
        rowMode: 'array',
        types: asText,
      });
      if (rows.length === 0) break;
      yield rows;
    }
  } finally {
    await client.query('COMMIT');
  }
}

export async function pgCursorOnly(client: pg.Client, table: string): Promise<number> {
  let rows = 0;
  for await (const chunk of fetchChunks(client, table)) rows += chunk.length;
  return rows;
}

/** One column of a chunk. */
const col = (rows: TextRow[], i: number) => rows.map((r) => r[i] ?? null);
const micros = (rows: TextRow[], i: number) => BigInt64Array.from(rows, (r) => BigInt(r[i] ?? 0));

const ARROW_SCHEMA = new Schema([
  new Field('id', new Utf8(), false),
  new Field('occurred_at', new TimestampMicrosecond('UTC'), false),
  new Field('received_at', new TimestampMicrosecond('UTC'), false),
  new Field('service', new Utf8(), false),
  new Field('type', new Utf8(), false),
  new Field('user_id', new Utf8(), true),
  new Field('message', new Utf8(), true),
  // The canonical Arrow JSON extension type; parquet-wasm 0.8 ignores it and writes a plain
  // string column (no JSON logical type), whose values are the jsonb text all the same.
  new Field('metadata', new Utf8(), true, new Map([['ARROW:extension:name', 'arrow.json']])),
  new Field('anonymized', new Bool(), false),
]);

function arrowBatch(rows: TextRow[]): RecordBatch {
  const utf8 = (i: number) => vectorFromArray(col(rows, i), new Utf8()).data[0] as Data;
  const ts = (i: number) =>
    makeData({
      type: new TimestampMicrosecond('UTC'),
      length: rows.length,
      nullCount: 0,
      data: micros(rows, i),
    });
  const bools = vectorFromArray(
    rows.map((r) => r[8] === 't'),
    new Bool(),
  ).data[0] as Data;
  const children = [utf8(0), ts(1), ts(2), utf8(3), utf8(4), utf8(5), utf8(6), utf8(7), bools];
  return new RecordBatch(
    ARROW_SCHEMA,
    makeData({ type: new Struct(ARROW_SCHEMA.fields), length: rows.length, nullCount: 0, children }),
  );
}

export async function viaParquetWasm(client: pg.Client, table: string, out: string): Promise<number> {
  let total = 0;
  const chunks = fetchChunks(client, table);
  // Pulled one chunk at a time by the writer, so PostgreSQL is read only as fast as it writes.
  const batches = new ReadableStream<wasm.RecordBatch>({
    async pull(controller) {
      const next = await chunks.next();
      if (next.done) return controller.close();
      total += next.value.length;
      const ipc = tableToIPC(new Table([arrowBatch(next.value)]), 'stream');
      const table = wasm.Table.fromIPCStream(ipc);
      for (const batch of table.recordBatches()) controller.enqueue(batch);
    },
  });
  const props = new wasm.WriterPropertiesBuilder()
    .setCompression(wasm.Compression.ZSTD)
    .setMaxRowGroupSize(ROW_GROUP_ROWS)
    .build();
  const bytes = await wasm.transformParquetStream(batches, props);
  await pipeline(Readable.fromWeb(bytes as never), createWriteStream(out));
  return total;
}

const utf8Col = (name: string, optional = false): SchemaElement => ({
  name,
  type: 'BYTE_ARRAY',
  converted_type: 'UTF8',
  logical_type: { type: 'STRING' },
  repetition_type: optional ? 'OPTIONAL' : 'REQUIRED',
});
const tsCol = (name: string): SchemaElement => ({
  name,
  type: 'INT64',
  converted_type: 'TIMESTAMP_MICROS',
  logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MICROS' },
  repetition_type: 'REQUIRED',
});
const HYPARQUET_SCHEMA: SchemaElement[] = [
  { name: 'root', num_children: 9 },
  utf8Col('id'),
  tsCol('occurred_at'),
  tsCol('received_at'),
  utf8Col('service'),
  utf8Col('type'),
  utf8Col('user_id', true),
  utf8Col('message', true),
  // Written with the JSON logical type only: hyparquet-writer JSON.stringifies the values of a
  // column whose converted type is JSON (the jsonb text would become a quoted string). DuckDB
  // reads a JSON column only by its converted type (else BLOB): viaHyparquet adds it before the
  // footer, which is written from this schema by finish().
  { name: 'metadata', type: 'BYTE_ARRAY', logical_type: { type: 'JSON' }, repetition_type: 'OPTIONAL' },
  { name: 'anonymized', type: 'BOOLEAN', repetition_type: 'REQUIRED' },
];

export async function viaHyparquet(client: pg.Client, table: string, out: string): Promise<number> {
  const schema: SchemaElement[] = HYPARQUET_SCHEMA.map((e) => ({ ...e }));
  const writer = new ParquetWriter({
    writer: fileWriter(out),
    schema,
    codec: 'ZSTD',
    compressors: { ZSTD: (input: Uint8Array) => zstdCompressSync(input) },
  });
  const encoder = new TextEncoder();
  const pending: TextRow[] = [];
  let total = 0;
  const flush = async () => {
    if (pending.length === 0) return;
    const rows = pending.splice(0, ROW_GROUP_ROWS);
    await writer.write({
      rowGroupSize: rows.length,
      columnData: [
        { name: 'id', data: col(rows, 0) },
        { name: 'occurred_at', data: micros(rows, 1) },
        { name: 'received_at', data: micros(rows, 2) },
        { name: 'service', data: col(rows, 3) },
        { name: 'type', data: col(rows, 4) },
        { name: 'user_id', data: col(rows, 5) },
        { name: 'message', data: col(rows, 6) },
        { name: 'metadata', data: rows.map((r) => (r[7] == null ? null : encoder.encode(r[7]))) },
        { name: 'anonymized', data: rows.map((r) => r[8] === 't') },
      ],
    });
  };
  for await (const chunk of fetchChunks(client, table)) {
    total += chunk.length;
    for (const row of chunk) pending.push(row);
    if (pending.length >= ROW_GROUP_ROWS) await flush();
  }
  while (pending.length > 0) await flush();
  const metadata = schema.find((e) => e.name === 'metadata');
  if (metadata) metadata.converted_type = 'JSON';
  await writer.finish();
  return total;
}
