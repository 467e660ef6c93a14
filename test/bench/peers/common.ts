/**
 * What every peer shares: the row it stores (the same columns Tributary's worker writes),
 * the basic checks a hand-written ingest route would make, and the listening handshake
 * the bench waits for. Peers are deliberately small and honest: no validation library,
 * no dedupe, no auth, no metrics.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';

export interface PeerRow {
  id: string;
  occurredAt: string;
  receivedAt: string;
  service: string;
  type: string;
  userId: string | null;
  message: string | null;
  metadata: string | null;
}

/** Required fields present and of the right type, or null. */
export function toRow(body: unknown, receivedAt: string): PeerRow | null {
  if (typeof body !== 'object' || body === null) return null;
  const e = body as Record<string, unknown>;
  if (typeof e.service !== 'string' || typeof e.type !== 'string') return null;
  return {
    id: typeof e.id === 'string' ? e.id : randomUUID(),
    occurredAt: typeof e.timestamp === 'string' ? e.timestamp : receivedAt,
    receivedAt,
    service: e.service,
    type: e.type,
    userId: typeof e.userId === 'string' ? e.userId : null,
    message: typeof e.message === 'string' ? e.message : null,
    metadata: e.metadata === undefined ? null : JSON.stringify(e.metadata),
  };
}

export const INSERT_COLUMNS = 'id, occurred_at, received_at, service, type, user_id, message, metadata';

export const rowValues = (r: PeerRow) => [
  r.id,
  r.occurredAt,
  r.receivedAt,
  r.service,
  r.type,
  r.userId,
  r.message,
  r.metadata,
];

/** Multi-row VALUES placeholders for `rows` rows of 8 columns. */
export function valuesSql(rows: number): string {
  const out: string[] = [];
  for (let i = 0; i < rows; i++) {
    const b = i * 8;
    out.push(`($${b + 1},$${b + 2},$${b + 3},$${b + 4},$${b + 5},$${b + 6},$${b + 7},$${b + 8}::jsonb)`);
  }
  return out.join(',');
}

/** Prints the port once listening (the bench reads it) and exits with the bench. */
export function announce(server: Server, onStop: () => Promise<void> = async () => {}): void {
  const print = () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
  };
  if (server.listening) print();
  else server.once('listening', print);
  const stop = () => {
    void onStop().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2_000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('close', stop).resume();
}

export function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
}
