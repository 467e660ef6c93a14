import { randomUUID } from 'node:crypto';

const SERVICES = ['checkout', 'billing', 'search', 'accounts', 'catalog'] as const;
const TYPES = ['order.placed', 'page.view', 'cart.updated', 'payment.captured', 'user.signup'] as const;
const PLANS = ['free', 'pro', 'team', 'enterprise'] as const;
const COUNTRIES = ['DE', 'FR', 'US', 'GB', 'JP', 'BR'] as const;
const PATHS = ['/checkout/confirm', '/products/42', '/search?q=boots', '/account/settings'] as const;
/** Distinct data subjects; spreads events over every stream partition. */
const USERS = 10_000;

let seq = 0;

function pick<T>(list: readonly T[], n: number): T {
  return list[n % list.length] as T;
}

/**
 * One realistic event as JSON (~300 bytes): a fresh UUID per call, so the API never
 * answers it as a duplicate; a current timestamp, so it always lies in the accepted window.
 */
export function eventJson(): string {
  const n = seq++;
  return JSON.stringify({
    id: randomUUID(),
    service: pick(SERVICES, n),
    type: pick(TYPES, n >> 2),
    userId: `user-${(n * 7919) % USERS}`,
    timestamp: new Date().toISOString(),
    metadata: {
      plan: pick(PLANS, n >> 1),
      country: pick(COUNTRIES, n >> 3),
      path: pick(PATHS, n),
      sessionId: `s-${(n * 104_729).toString(36)}`,
      userAgent: 'Mozilla/5.0 Firefox/128.0',
      durationMs: n % 1_500,
      amountCents: (n * 37) % 100_000,
      currency: 'EUR',
    },
  });
}

/** `{"events":[…]}` with `size` fresh events. */
export function batchJson(size: number): string {
  const parts = new Array<string>(size);
  for (let i = 0; i < size; i++) parts[i] = eventJson();
  return `{"events":[${parts.join(',')}]}`;
}
