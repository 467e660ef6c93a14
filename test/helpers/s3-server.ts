import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ArchiveStoreConfig } from '../../src/archive/object-store.ts';

const S3RVER_CLI = fileURLToPath(new URL('../../node_modules/s3rver/bin/s3rver.js', import.meta.url));
/** s3rver's own default credentials; it rejects requests signed with any others. */
const S3RVER_KEY = 'S3RVER';

export interface S3Server {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  bucket: string;
  /** A store configuration that reaches this server (path-style, s3rver's credentials, checksums when required). */
  config: ArchiveStoreConfig;
  /** Kills the server and removes its directory. */
  stop(): Promise<void>;
}

/**
 * A real s3rver, in a child process of its own with a fresh temp directory, listening on a
 * port the kernel picks on loopback, with `bucket` created before it listens.
 */
export async function startS3Server(options: { bucket?: string } = {}): Promise<S3Server> {
  const bucket = options.bucket ?? 'tributary-archive-test';
  const dir = mkdtempSync(join(tmpdir(), 'tributary-s3rver-'));
  const args = ['-d', dir, '-a', '127.0.0.1', '-p', '0', '--silent', '--configure-bucket', bucket];
  const child = spawn(process.execPath, [S3RVER_CLI, ...args], {
    // s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider.
    env: { PATH: process.env.PATH ?? '', NODE_OPTIONS: '--openssl-legacy-provider' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`s3rver did not listen within 15 s; stderr: ${stderr}`)),
        15_000,
      );
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        const listening = /S3rver listening on [\d.]+:(\d+)/.exec(stdout);
        if (listening) {
          clearTimeout(timer);
          resolve(Number(listening[1]));
        }
      });
      void exited.then(([code]) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited with ${code} before listening; stderr: ${stderr}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }

  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    config: {
      // Unused: a bucket selects S3.
      ARCHIVE_DIR: join(dir, 'unused'),
      ARCHIVE_S3_ENDPOINT: endpoint,
      ARCHIVE_S3_BUCKET: bucket,
      ARCHIVE_S3_REGION: 'us-east-1',
      ARCHIVE_S3_ACCESS_KEY_ID: S3RVER_KEY,
      ARCHIVE_S3_SECRET_ACCESS_KEY: S3RVER_KEY,
      ARCHIVE_S3_FORCE_PATH_STYLE: true,
      ARCHIVE_S3_CHECKSUMS: 'when_required',
    },
    stop,
  };
}
