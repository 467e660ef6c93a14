import { z } from '@hono/zod-openapi';

// What the retention and archive operations of `admin.ts` answer and accept.

const dateTime = () => z.string().openapi({ format: 'date-time' });

export const RetentionRun = z
  .strictObject({
    id: z.guid(),
    trigger: z.string().openapi({ example: 'manual', description: 'schedule, manual, cli or erasure' }),
    status: z.string().openapi({ example: 'completed' }),
    holder: z.string().openapi({ description: 'The process that runs or ran it' }),
    startedAt: dateTime(),
    heartbeatAt: dateTime(),
    finishedAt: dateTime().nullable(),
    rowsArchived: z.number(),
    bytesArchived: z.number(),
    rowsDeleted: z.number(),
    rowsAnonymized: z.number(),
    partitionsDropped: z.array(z.string()),
    steps: z.array(z.unknown()),
    error: z.string().nullable(),
  })
  .openapi('RetentionRun');
export type RetentionRun = z.infer<typeof RetentionRun>;

export const Archive = z
  .strictObject({
    id: z.guid(),
    runId: z.guid().nullable(),
    month: z.string().openapi({ example: '2026-01' }),
    service: z.string(),
    source: z.string().openapi({ description: '`events`, or the detached partition it was read from' }),
    rangeFrom: dateTime(),
    rangeTo: dateTime(),
    objectKey: z.string(),
    manifestKey: z.string(),
    status: z.enum(['writing', 'verified', 'complete', 'restored']),
    rowCount: z.number().nullable(),
    bytes: z.number().nullable(),
    sha256: z.string().nullable(),
    minOccurredAt: dateTime().nullable(),
    maxOccurredAt: dateTime().nullable(),
    schemaVersion: z.number().int(),
    createdAt: dateTime(),
    verifiedAt: dateTime().nullable(),
    completedAt: dateTime().nullable(),
    restoredAt: dateTime().nullable(),
    holdUntil: dateTime().nullable(),
  })
  .openapi('Archive');
export type Archive = z.infer<typeof Archive>;

export const ArchiveQuery = z.strictObject({
  month: z
    .string()
    .regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be YYYY-MM')
    .optional(),
  service: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/)
    .optional(),
  status: z.enum(['writing', 'verified', 'complete', 'restored']).optional(),
  limit: z.coerce.number().int().min(1).max(1_000).default(100),
  cursor: z.string().max(200).optional(),
});
export type ArchiveQuery = z.input<typeof ArchiveQuery>;
