/** Limits from the contract (ARCHITECTURE.md §3). */
export const EVENT_LIMITS = {
  /** A whole event, serialised. */
  maxEventBytes: 64 * 1024,
  /** `metadata`, serialised. */
  maxMetadataBytes: 32 * 1024,
  /** Object/array nesting inside `metadata`, counting `metadata` itself as 1. */
  maxMetadataDepth: 16,
  maxServiceLength: 64,
  maxTypeLength: 128,
  maxUserIdLength: 256,
  maxMessageLength: 1000,
  /**
   * Issues reported for one event. A 1 MiB body of unknown fields otherwise answered
   * with one detail per field: a 6× larger refusal than the request.
   */
  maxIssues: 10,
  /** Events in one batch request. */
  maxBatchEvents: 1000,
  /** How far ahead of the receive time a timestamp may be. */
  maxFutureSkewMs: 5 * 60 * 1000,
} as const;

/** Keys that would reach an object's prototype in naive consumers of the JSON. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
