/**
 * Limit: raw XADD of entries shaped like Tributary's (fields v, e, tp; the same ~300-byte
 * events) into partition streams laid out like Tributary's, with PIPELINES pipelines of
 * PIPELINE_SIZE commands in flight. No validation, no dedupe, no HTTP. Prints one JSON line.
 */
import { Redis } from 'ioredis';
import { bufferKeys, ENTRY_FORMAT_VERSION } from '../../../src/buffer/keys.ts';
import { eventJson } from '../payload.ts';

const seconds = Number(process.env.SECONDS ?? 5);
const pipelines = Number(process.env.PIPELINES ?? 4);
const pipelineSize = Number(process.env.PIPELINE_SIZE ?? 100);
const keys = bufferKeys(process.env.PREFIX ?? 'limit', Number(process.env.PARTITIONS ?? 8));
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');

let written = 0;
let next = 0;
const deadline = performance.now() + seconds * 1000;
const started = performance.now();
const lane = async () => {
  while (performance.now() < deadline) {
    const p = redis.pipeline();
    for (let i = 0; i < pipelineSize; i++) {
      p.xadd(
        keys.stream(next++ % keys.partitions),
        '*',
        'v',
        ENTRY_FORMAT_VERSION,
        'e',
        // The normalised event Tributary stores carries the time it was received.
        `${eventJson().slice(0, -1)},"receivedAt":"${new Date().toISOString()}"}`,
        'tp',
        '',
      );
    }
    await p.exec();
    written += pipelineSize;
  }
};
await Promise.all(Array.from({ length: pipelines }, lane));
const elapsed = (performance.now() - started) / 1000;
process.stdout.write(`${JSON.stringify({ events: written, seconds: elapsed })}\n`);
redis.disconnect();
