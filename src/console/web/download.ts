import { ApiError, authHeaders, errorFrom, reportUnauthorized, storedKey } from './api.ts';
import { LineCounter } from './compliance.ts';

// A file from the API (an NDJSON export) fetched with the signed-in key in its header, then
// saved from memory: a plain link could not carry the key, and the key never goes in a URL.

export interface Fetched {
  blob: Blob;
  lines: number;
  bytes: number;
}

/**
 * GETs `path` with the stored key, reading the body as it streams and reporting the lines
 * received so far. A refusal throws {@link ApiError}; so does a stream that breaks off
 * (`export_interrupted`), whose partial file would look complete.
 */
export async function fetchFile(
  path: string,
  opts: { accept: string; onProgress?(lines: number, bytes: number): void; signal?: AbortSignal },
): Promise<Fetched> {
  const key = storedKey();
  let res: Response;
  try {
    res = await fetch(path, {
      headers: { accept: opts.accept, ...(key ? authHeaders(key) : {}) },
      credentials: 'omit',
      cache: 'no-store',
      signal: opts.signal ?? null,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError('network_error', 0, 'the API could not be reached');
  }
  if (!res.ok) {
    const error = await errorFrom(res);
    if (res.status === 401) reportUnauthorized(error);
    throw error;
  }
  const counter = new LineCounter();
  const parts: Uint8Array<ArrayBuffer>[] = [];
  const reader = res.body?.getReader();
  try {
    while (reader) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      counter.add(value);
      opts.onProgress?.(counter.lines, counter.bytes);
    }
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(
      'export_interrupted',
      0,
      `the download broke off after ${counter.lines} lines; nothing was saved (a partial export would look whole)`,
    );
  }
  const type = res.headers.get('content-type') ?? opts.accept;
  return { blob: new Blob(parts, { type }), lines: counter.lines, bytes: counter.bytes };
}

/**
 * Saves a blob under `fileName` through a temporary object URL and a download link. Not a
 * navigation, so the page's CSP (no frames, no form posts) does not stand in the way.
 */
export function saveFile(blob: Blob, fileName: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The browser has the blob once the download starts; keep the URL a while for slow starts.
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}
