import { createHmac } from 'node:crypto';

/**
 * The pseudonym that anonymisation writes in place of a user id: HMAC-SHA256 under
 * ANONYMIZE_SECRET, hex. Erasure and export look a subject up under both their id and this.
 * It lives with the event (pure, no I/O) because both retention (which writes it) and
 * compliance (which searches for it) need it, and neither may import the other.
 */
export function pseudonymize(secret: string, userId: string): string {
  return createHmac('sha256', secret).update(userId, 'utf8').digest('hex');
}
