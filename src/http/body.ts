import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import type { Context } from 'hono';
import { parseJsonExact } from '../events/json-numbers.ts';
import type { AppEnv } from './env.ts';
import { errors } from './errors.ts';

const gunzipAsync = promisify(gunzip);

export type BodyKind = 'json' | 'ndjson';

/** The request's media type, lower-cased, without parameters ('' when none). */
export function mediaType(c: Context<AppEnv>): string {
  return mediaTypeOf(c.req.header('content-type'));
}

/** A Content-Type header's media type, lower-cased, without parameters ('' when none). */
export function mediaTypeOf(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** Media type of the request, checked against the kinds the route accepts. */
export function bodyKind(c: Context<AppEnv>, accepted: readonly BodyKind[]): BodyKind {
  return bodyKindOf(c.req.header('content-type'), accepted);
}

/** {@link bodyKind} of a Content-Type header: `415 unsupported_media_type` for any other type. */
export function bodyKindOf(contentType: string | undefined, accepted: readonly BodyKind[]): BodyKind {
  const type = mediaTypeOf(contentType);
  if (accepted.includes('json') && (type === 'application/json' || type.endsWith('+json'))) return 'json';
  if (accepted.includes('ndjson') && (type === 'application/x-ndjson' || type === 'application/jsonl')) {
    return 'ndjson';
  }
  const names = accepted.map((k) => (k === 'json' ? 'application/json' : 'application/x-ndjson'));
  throw errors.unsupportedMediaType(`Content-Type must be ${names.join(' or ')}`);
}

/** Where a body comes from: its headers, and Node's request (or, without one, the web body). */
export interface BodySource {
  header(name: string): string | undefined;
  incoming: IncomingMessage | undefined;
  web(): ReadableStream<Uint8Array> | null;
}

/**
 * Reads the request body as UTF-8 text (`400 invalid_utf8` when it is not) with `maxBytes` enforced before reading (declared
 * Content-Length), while reading, and after gzip decompression, so neither a large body
 * nor a gzip bomb is ever held in memory whole.
 */
export function readBody(c: Context<AppEnv>, maxBytes: number): Promise<string> {
  return readBodyOf(
    { header: (n) => c.req.header(n), incoming: c.env?.incoming, web: () => c.req.raw.body },
    maxBytes,
  );
}

/** {@link readBody} of any {@link BodySource}. */
export async function readBodyOf(source: BodySource, maxBytes: number): Promise<string> {
  const encoding = (source.header('content-encoding') ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'x-gzip') {
    throw errors.unsupportedMediaType(`Content-Encoding "${encoding}" is not supported; use gzip or none`);
  }
  const declared = Number(source.header('content-length') ?? Number.NaN);
  if (declared > maxBytes) throw errors.payloadTooLarge(maxBytes);

  // Straight from Node's request when there is one: no web stream, no Request object.
  const incoming = source.incoming;
  const raw = incoming ? await readIncoming(incoming, maxBytes) : await readLimited(source.web(), maxBytes);
  if (encoding === 'identity') return utf8Text(raw);
  let inflated: Buffer;
  try {
    inflated = await gunzipAsync(raw, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw errors.payloadTooLarge(maxBytes);
    throw errors.invalidJson('body is not valid gzip');
  }
  return utf8Text(inflated);
}

/**
 * The body as text, refused (`400 invalid_utf8`) unless it is valid UTF-8: decoding would
 * otherwise put U+FFFD in place of each bad byte, a silent change of what the client sent.
 * `isUtf8` is one pass in native code.
 */
function utf8Text(bytes: Buffer): string {
  if (!isUtf8(bytes)) throw errors.invalidUtf8();
  return bytes.toString('utf8');
}

/** Reads a Node request body, refusing it as soon as it passes `maxBytes`. */
function readIncoming(incoming: IncomingMessage, maxBytes: number): Promise<Buffer> {
  if (incoming.readableEnded) return Promise.resolve(Buffer.alloc(0));
  // Gone before the handler got here: no event would ever settle the read.
  if (incoming.destroyed) return Promise.reject(errors.incompleteBody());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err?: Error) => {
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onClose);
      incoming.off('close', onClose);
      if (err) reject(err);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > maxBytes) {
        // Stop buffering; the rest is drained by the server after the 413 is sent.
        done(errors.payloadTooLarge(maxBytes));
        incoming.resume();
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    };
    // The client went away (or was cut off by the request timeout) mid-body: a client
    // failure, not a server one, so it must not be logged and counted as a 500.
    const onClose = () => {
      if (!incoming.readableEnded) done(errors.incompleteBody());
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onClose);
    incoming.on('close', onClose);
  });
}

async function readLimited(body: ReadableStream<Uint8Array> | null, maxBytes: number): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  for (;;) {
    let chunk: Awaited<ReturnType<typeof reader.read>>;
    try {
      chunk = await reader.read();
    } catch {
      // The client went away (or was cut off by the request timeout) mid-body: a client
      // failure, not a server one, so it must not be logged and counted as a 500.
      throw errors.incompleteBody();
    }
    if (chunk.done) break;
    size += chunk.value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw errors.payloadTooLarge(maxBytes);
    }
    chunks.push(chunk.value);
  }
  return Buffer.concat(chunks, size);
}

/**
 * JSON.parse that turns a syntax error into the contract's `invalid_json`, and puts a
 * `LossyNumber` in place of a number that would not survive the parse (`json-numbers.ts`),
 * for the schema to refuse.
 */
export function parseJson(text: string): unknown {
  try {
    return parseJsonExact(text);
  } catch (err) {
    throw errors.invalidJson(`body is not valid JSON: ${(err as Error).message}`);
  }
}
