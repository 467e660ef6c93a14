import { parseArgs } from 'node:util';
import type { Config } from '../config.ts';
import { eventShape } from '../events/event.schema.ts';
import { createApiKey, listApiKeys, revokeApiKey, SCOPES, type Scope } from '../store/api-keys.repo.ts';
import { USAGE, UsageError } from './cli.ts';
import { createServices, type Services } from './services.ts';

/** `tributary keys create|list|revoke …`: one JSON line per key (the new key's secret once). */
export async function runKeys(config: Config, args: string[]): Promise<void> {
  const services = createServices({ ...config, LOG_LEVEL: 'warn' }, { role: 'keys' });
  try {
    const [sub, ...rest] = args;
    if (sub === 'create') {
      await createKey(services, rest);
    } else if (sub === 'list') {
      for (const k of await listApiKeys(services.deps.db)) process.stdout.write(`${JSON.stringify(k)}\n`);
    } else if (sub === 'revoke' && rest[0]) {
      await revokeKey(services, rest[0]);
    } else {
      throw new UsageError(USAGE);
    }
  } finally {
    await services.close();
  }
}

async function createKey(services: Services, args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      name: { type: 'string' },
      scopes: { type: 'string' },
      services: { type: 'string' },
      'rate-limit': { type: 'string' },
    },
  });
  const scopes = (values.scopes ?? '').split(',').filter(Boolean);
  const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (!values.name || scopes.length === 0 || bad.length > 0) {
    throw new UsageError(`keys create needs --name and --scopes from ${SCOPES.join(',')}`);
  }
  const rate = values['rate-limit'] === undefined ? null : Number(values['rate-limit']);
  if (rate !== null && (!Number.isInteger(rate) || rate < 1))
    throw new UsageError('--rate-limit must be a positive integer');
  const bound = (values.services ?? '').split(',').filter(Boolean);
  const badService = bound.find((s) => !eventShape.shape.service.safeParse(s).success);
  if (badService !== undefined) {
    throw new UsageError(`--services: "${badService}" is not a service name (1–64 of A-Z a-z 0-9 . _ -)`);
  }
  const { key, info } = await createApiKey(services.deps.db, {
    name: values.name,
    scopes: scopes as Scope[],
    services: bound,
    rateLimitPerMinute: rate,
  });
  // Every API process forgets the keys it found unknown: the new one works at once.
  await services.redisReady(2_000);
  await services.deps.redis.publish(services.deps.redisKeys.keyInvalidations, info.id).catch(() => {});
  process.stdout.write(
    `${JSON.stringify({ id: info.id, key, scopes: info.scopes, services: info.services })}\n`,
  );
}

async function revokeKey(services: Services, id: string): Promise<void> {
  const { db, redis, redisKeys } = services.deps;
  if (!(await revokeApiKey(db, id))) throw new UsageError(`no active key ${id}`);
  // Every API process drops the key from its cache now rather than within 5 s.
  await services.redisReady(2_000);
  await redis.publish(redisKeys.keyInvalidations, id).catch(() => {});
  process.stdout.write(`revoked ${id}\n`);
}
