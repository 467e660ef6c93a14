import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ArchiveStoreConfig,
  createObjectStore,
  ObjectNotFoundError,
  type ObjectStore,
} from '../../src/archive/object-store.ts';
import { type S3Server, startS3Server } from '../helpers/s3-server.ts';

const MiB = 1024 * 1024;
/** Above two 16 MiB parts and not a multiple of one: S3 gets three parts, the last a short one. */
const BIG_SIZE = 40 * MiB + 12_345;
const PARQUET = 'application/vnd.apache.parquet';

/** Local files the stores read from and write to (sources, downloads). */
const work = mkdtempSync(join(tmpdir(), 'tributary-object-store-work-'));
const bigFile = join(work, 'big.bin');
let bigSha = '';

beforeAll(() => {
  const hash = createHash('sha256');
  const fd = openSync(bigFile, 'w');
  try {
    for (let written = 0; written < BIG_SIZE; written += MiB) {
      const chunk = randomBytes(Math.min(MiB, BIG_SIZE - written));
      hash.update(chunk);
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
  bigSha = hash.digest('hex');
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

function directoryConfig(dir: string): ArchiveStoreConfig {
  return {
    ARCHIVE_DIR: dir,
    ARCHIVE_S3_REGION: 'us-east-1',
    ARCHIVE_S3_FORCE_PATH_STYLE: false,
    ARCHIVE_S3_CHECKSUMS: 'when_supported',
  };
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');

/** Runs `fn` over `items`, at most `limit` at a time (the workers share one iterator). */
async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  const queue = items.values();
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (const item of queue) await fn(item);
    }),
  );
}

/**
 * s3rver twice: as startS3Server configures it, and with the production setting, where
 * uploads carry a SHA-256 header. s3rver does not check that header, but the run shows the requests
 * it shapes are accepted and the bytes arrive whole (this store never streams a PutObject body,
 * which is what s3rver would store with aws-chunked framing).
 */
const backends = [
  { name: 'a directory', checksums: undefined, listed: 1_100 },
  { name: 's3rver, checksums when_required', checksums: 'when_required', listed: 1_100 },
  // Listing does not depend on checksums, and pagination is covered by the run above (~4 s of puts).
  { name: 's3rver, checksums when_supported', checksums: 'when_supported', listed: 100 },
] as const;

describe.each(backends)('object store on $name', ({ checksums, listed }) => {
  const tag = checksums ?? 'directory';
  let store: ObjectStore;
  let server: S3Server | undefined;
  let dir: string | undefined;

  beforeAll(async () => {
    if (checksums) {
      server = await startS3Server({ bucket: 'tributary-object-store' });
      store = createObjectStore({ ...server.config, ARCHIVE_S3_CHECKSUMS: checksums });
    } else {
      dir = mkdtempSync(join(tmpdir(), 'tributary-archive-'));
      store = createObjectStore(directoryConfig(dir));
    }
  });

  afterAll(async () => {
    await store?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('names its location', () => {
    expect(store.location).toBe(server ? 's3://tributary-object-store' : `file://${dir}`);
  });

  it('streams a large file up and back down with the same size and SHA-256', async () => {
    const key = 'events/year=2024/month=01/service=api/part-0.parquet';
    const put = await store.putFile(key, bigFile, PARQUET);
    expect(put).toEqual({ key, size: BIG_SIZE, sha256: bigSha });
    expect(await store.head(key)).toEqual({ size: BIG_SIZE });

    const download = join(work, `${tag}-download.bin`);
    expect(await store.getFile(key, download)).toEqual({ key, size: BIG_SIZE, sha256: bigSha });
    expect(statSync(download).size).toBe(BIG_SIZE);
    expect(await sha256OfFile(download)).toBe(bigSha);
    rmSync(download);
  });

  it('stores small bodies with putBytes and returns them with getBytes', async () => {
    const body = new TextEncoder().encode('{"rows":3,"sha256":"abc"}');
    const key = 'manifests/2024-01.json';
    expect(await store.putBytes(key, body, 'application/json')).toEqual({
      key,
      size: body.byteLength,
      sha256: sha256(body),
    });
    expect(text(await store.getBytes(key))).toBe('{"rows":3,"sha256":"abc"}');
    expect(await store.head(key)).toEqual({ size: body.byteLength });

    const empty = await store.putBytes('manifests/empty', new Uint8Array(0), 'application/json');
    expect(empty.size).toBe(0);
    expect((await store.getBytes('manifests/empty')).byteLength).toBe(0);
    expect(await store.head('manifests/empty')).toEqual({ size: 0 });
    const emptyFile = join(work, `${tag}-empty`);
    await writeFile(emptyFile, '');
    expect(await store.putFile('manifests/empty-file', emptyFile, 'text/plain')).toEqual({
      ...empty,
      key: 'manifests/empty-file',
    });
    expect(await store.head('manifests/empty-file')).toEqual({ size: 0 });
  });

  it('reports a missing object as absent or ObjectNotFoundError, and writes no download for it', async () => {
    expect(await store.head('missing/object')).toBeUndefined();
    await expect(store.getBytes('missing/object')).rejects.toBeInstanceOf(ObjectNotFoundError);
    const download = join(work, `${tag}-missing.bin`);
    await expect(store.getFile('missing/object', download)).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(existsSync(download)).toBe(false);
  });

  it('overwrites an existing key, from bytes or from a file', async () => {
    const key = 'overwrite/object.bin';
    await store.putBytes(key, new TextEncoder().encode('first version'), 'text/plain');
    const source = join(work, `${tag}-second.txt`);
    await writeFile(source, 'second');
    expect(await store.putFile(key, source, 'text/plain')).toMatchObject({ size: 6 });
    expect(text(await store.getBytes(key))).toBe('second');
    expect(await store.head(key)).toEqual({ size: 6 });

    await store.putBytes(key, new TextEncoder().encode('third, and longer than the second'), 'text/plain');
    expect(text(await store.getBytes(key))).toBe('third, and longer than the second');
  });

  it('deletes an object, and deleting a missing key is no error', async () => {
    await store.putBytes('delete/me', new TextEncoder().encode('x'), 'text/plain');
    await store.delete('delete/me');
    expect(await store.head('delete/me')).toBeUndefined();
    await expect(store.getBytes('delete/me')).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(await store.list('delete/')).toEqual([]);
    await expect(store.delete('delete/me')).resolves.toBeUndefined();
    await expect(store.delete('never/existed')).resolves.toBeUndefined();
  });

  it('fails putFile of a missing local file and stores nothing', async () => {
    await expect(store.putFile('failed/put', join(work, 'no-such-file'), PARQUET)).rejects.toThrow(/ENOENT/);
    expect(await store.head('failed/put')).toBeUndefined();
  });

  it(`lists every key under a prefix, sorted (${listed} keys: one S3 page holds 1000)`, async () => {
    const keys = Array.from({ length: listed }, (_, i) => `listing/service=api/part-${i}.parquet`);
    // No neighbour like 'listing-other/': s3rver pages in directory-walk order, not key order, and
    // skips a key sorting before '/' that its walk reaches after the page break.
    const neighbours = ['listing_other/a', 'listingx', 'listing/service=web/part-0.parquet'];
    const tiny = new Uint8Array([1]);
    await inParallel([...keys, ...neighbours], 32, (key) => store.putBytes(key, tiny, PARQUET));

    // Unpadded numbers, so sorted order is not the order they were written in.
    const sorted = [...keys].sort();
    expect(sorted).not.toEqual(keys);
    expect(await store.list('listing/service=api/')).toEqual(sorted);
    // A prefix is a string prefix, as in S3, not a directory name.
    expect(await store.list('listing/service=api/part-10')).toEqual(
      sorted.filter((k) => k.includes('part-10')),
    );
    expect(await store.list('listing')).toEqual([...keys, ...neighbours].sort());
    expect(await store.list('listing/')).toEqual([...keys, 'listing/service=web/part-0.parquet'].sort());
    expect(await store.list('nothing/here/')).toEqual([]);
  });
});

describe('object store on a directory: layout, keys and atomic writes', () => {
  const root = mkdtempSync(join(tmpdir(), 'tributary-archive-root-'));
  const dir = join(root, 'archive');
  const store = createObjectStore(directoryConfig(dir));

  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  /** Every file under `path`, relative to it. */
  async function filesUnder(path: string): Promise<string[]> {
    const entries = await readdir(path, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(path.length + 1));
  }

  it('keeps each object as a file at its key, with no temp files left behind', async () => {
    await store.putFile('events/year=2024/month=02/service=api/part-0.parquet', bigFile, PARQUET);
    await store.putBytes(
      'events/year=2024/month=02/manifest.json',
      new Uint8Array([123, 125]),
      'application/json',
    );
    expect((await filesUnder(dir)).sort()).toEqual([
      'events/year=2024/month=02/manifest.json',
      'events/year=2024/month=02/service=api/part-0.parquet',
    ]);
    expect(await sha256OfFile(join(dir, 'events/year=2024/month=02/service=api/part-0.parquet'))).toBe(
      bigSha,
    );
  });

  it('does not list or read a temp file a crashed write left', async () => {
    await writeFile(join(dir, 'events/year=2024/month=02/part-9.parquet.tmp-0123abcd'), 'half written');
    expect(await store.list('events/year=2024/month=02/')).toEqual([
      'events/year=2024/month=02/manifest.json',
      'events/year=2024/month=02/service=api/part-0.parquet',
    ]);
    expect(await store.head('events/year=2024/month=02/part-9.parquet')).toBeUndefined();
  });

  it('rejects keys that could leave the directory, and writes nothing for them', async () => {
    const bad = ['../escape', 'a/../../escape', '/etc/escape', 'a\\b', '', 'a//b', 'a/', './a', 'a.tmp-1'];
    for (const key of bad) {
      await expect(store.putBytes(key, new Uint8Array([1]), 'text/plain'), key).rejects.toThrow(
        /invalid object key/,
      );
      await expect(store.putFile(key, bigFile, PARQUET), key).rejects.toThrow(/invalid object key/);
      await expect(store.getBytes(key), key).rejects.toThrow(/invalid object key/);
      await expect(store.head(key), key).rejects.toThrow(/invalid object key/);
      await expect(store.delete(key), key).rejects.toThrow(/invalid object key/);
    }
    await expect(store.list('../')).rejects.toThrow(/invalid object key/);
    await expect(store.list('/etc/')).rejects.toThrow(/invalid object key/);
    expect(await readdir(root)).toEqual(['archive']);
    expect(existsSync('/etc/escape')).toBe(false);
  });

  it('lets a reader see the whole old or the whole new object while it is overwritten', async () => {
    const versions = [randomBytes(4 * MiB), randomBytes(3 * MiB)] as const;
    const sources = [join(work, 'version-0.bin'), join(work, 'version-1.bin')] as const;
    await writeFile(sources[0], versions[0]);
    await writeFile(sources[1], versions[1]);
    const expected = new Set(versions.map(sha256));
    const key = 'overwrite/atomic.bin';
    await store.putFile(key, sources[0], PARQUET);

    let writing = true;
    const writer = (async () => {
      try {
        for (let round = 0; round < 20; round++)
          await store.putFile(key, sources[round % 2 === 0 ? 1 : 0], PARQUET);
      } finally {
        writing = false;
      }
    })();
    const seen: string[] = [];
    while (writing) seen.push(sha256(await store.getBytes(key)));
    await writer;
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.filter((s) => !expected.has(s))).toEqual([]);
  });
});
