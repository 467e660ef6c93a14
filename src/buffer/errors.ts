/** Redis could not be reached or did not answer in time: the caller may retry later. */
export class BufferUnavailableError extends Error {
  override readonly name = 'BufferUnavailableError';
  readonly retriable = true;
}

/** Redis refused the write for lack of memory: backpressure. */
export class BufferFullError extends Error {
  override readonly name = 'BufferFullError';
  readonly retriable = true;
}

/** Maps a Redis client error to the buffer's own error types. */
export function toBufferError(err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  if (message.startsWith('OOM')) return new BufferFullError(message);
  return new BufferUnavailableError(message);
}
