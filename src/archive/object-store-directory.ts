import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type Dirent } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import {
  describeBytes,
  ObjectNotFoundError,
  type ObjectStore,
  Sha256Stream,
  type StoredObject,
} from './object-store-shared.ts';

/** Marks a file being written; such files are never listed or read as objects. */
const TEMP_MARK = '.tmp-';

/**
 * Objects as files under one directory, key `a/b/c` at `<dir>/a/b/c`. Writes go to a temp
 * file beside the target that is fsynced and renamed over it, so a reader sees the old or the
 * whole new file, and a completed put survives a crash. A key cannot be both a file and the
 * directory of other keys (`a` and `a/b`), which S3 would allow; archive keys never are.
 */
export class DirectoryObjectStore implements ObjectStore {
  readonly location: string;
  readonly #root: string;

  constructor(dir: string) {
    this.#root = resolve(dir);
    this.location = pathToFileURL(this.#root).href;
  }

  async putFile(key: string, path: string, _contentType: string): Promise<StoredObject> {
    const digest = new Sha256Stream();
    await this.#writeAtomically(key, (temp) =>
      pipeline(createReadStream(path), digest, createWriteStream(temp, { flags: 'wx', flush: true })),
    );
    return digest.result(key);
  }

  async putBytes(key: string, body: Uint8Array, _contentType: string): Promise<StoredObject> {
    await this.#writeAtomically(key, (temp) => writeFile(temp, body, { flag: 'wx', flush: true }));
    return describeBytes(key, body);
  }

  async getFile(key: string, path: string): Promise<StoredObject> {
    const source = await this.#openObject(key);
    const digest = new Sha256Stream();
    try {
      // The read stream closes `source` when it ends or is destroyed.
      await pipeline(source.createReadStream(), digest, createWriteStream(path));
    } catch (err) {
      await rm(path, { force: true }).catch(() => {});
      throw err;
    }
    return digest.result(key);
  }

  async getBytes(key: string): Promise<Uint8Array> {
    const source = await this.#openObject(key);
    try {
      return await source.readFile();
    } finally {
      await source.close();
    }
  }

  async head(key: string): Promise<{ size: number } | undefined> {
    try {
      const info = await stat(this.#path(key));
      return info.isFile() ? { size: info.size } : undefined;
    } catch (err) {
      if (isAbsent(err)) return undefined;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    if (prefix !== '') assertValidKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
    // Walk only the deepest directory the prefix names whole; its last segment may be partial.
    const base = join(this.#root, prefix.slice(0, prefix.lastIndexOf('/') + 1));
    let entries: Dirent[];
    try {
      entries = await readdir(base, { recursive: true, withFileTypes: true });
    } catch (err) {
      if (isAbsent(err)) return [];
      throw err;
    }
    return entries
      .filter((entry) => entry.isFile() && !entry.name.includes(TEMP_MARK))
      .map((entry) => relative(this.#root, join(entry.parentPath, entry.name)).split(sep).join('/'))
      .filter((key) => key.startsWith(prefix))
      .sort();
  }

  async delete(key: string): Promise<void> {
    const path = this.#path(key);
    try {
      await unlink(path);
    } catch (err) {
      // EISDIR: `a` when only `a/b` exists, which is no object either.
      if (isAbsent(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return;
      throw err;
    }
    // An erased object must not come back after a crash.
    await syncDirectory(dirname(path));
  }

  async close(): Promise<void> {}

  #path(key: string): string {
    assertValidKey(key);
    return join(this.#root, ...key.split('/'));
  }

  async #openObject(key: string): Promise<FileHandle> {
    let handle: FileHandle;
    try {
      handle = await open(this.#path(key), 'r');
    } catch (err) {
      if (isAbsent(err)) throw new ObjectNotFoundError(key, { cause: err });
      throw err;
    }
    if (!(await handle.stat()).isFile()) {
      await handle.close();
      throw new ObjectNotFoundError(key);
    }
    return handle;
  }

  async #writeAtomically(key: string, write: (temp: string) => Promise<void>): Promise<void> {
    const target = this.#path(key);
    const dir = dirname(target);
    const firstCreated = await mkdir(dir, { recursive: true });
    const temp = `${target}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
    try {
      await write(temp);
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    // The rename is durable once the directory is; new directories' own entries likewise.
    await syncDirectory(dir);
    if (firstCreated === undefined) return;
    for (let d = dir; d !== dirname(d); d = dirname(d)) {
      await syncDirectory(dirname(d));
      if (d === firstCreated) break;
    }
  }
}

/** What makes a key unusable: it could leave the directory, or the directory cannot hold it as given. */
const KEY_PROBLEMS: [problem: string, test: (key: string) => boolean][] = [
  ['empty', (key) => key === ''],
  ['absolute', (key) => key.startsWith('/')],
  ['contains a backslash', (key) => key.includes('\\')],
  ['contains ".."', (key) => key.includes('..')],
  ['contains NUL', (key) => key.includes('\0')],
  ['has an empty or "." segment', (key) => key.split('/').some((s) => s === '' || s === '.')],
  [`contains "${TEMP_MARK}"`, (key) => key.includes(TEMP_MARK)],
];

function assertValidKey(key: string): void {
  const problem = KEY_PROBLEMS.find(([, test]) => test(key));
  if (problem) throw new Error(`invalid object key ${JSON.stringify(key)}: ${problem[0]}`);
}

function isAbsent(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
