/**
 * What a tracking plan costs ingest (ARCHITECTURE §14): batches of 100 `order.completed`
 * events with 20 metadata properties (wrk/ingest.lua, format `plans`), sent to one `serve`
 * taking turns in rounds: to a service whose plan checks every event against a 20-property
 * schema in `reject` mode (formats, enums, patterns and ranges; every event passes), and
 * the same batches to a service with no plan. Reported as the ratio plan / no plan (target ≥ 0.85).
 */
import { ADMIN_KEY } from '../helpers/env.ts';
import type { ServerChild } from './children.ts';
import { bufferCheck, contender, measureWrk, warmUp } from './ingest.ts';
import { type BenchContext, dropStreams, interleave, log, ratios, SETTINGS, settle } from './measure.ts';

const PLANNED = 'bench-planned';
const UNPLANNED = 'bench-unplanned';
const TYPE = 'order.completed';
/** The services this scenario's load sends: the deployed key is bound to them too. */
export const PLAN_SERVICES = [PLANNED, UNPLANNED];

/** The plan: every property of the events wrk sends, each with a constraint. */
export const ORDER_COMPLETED_SCHEMA = {
  type: 'object',
  properties: {
    orderId: { type: 'string', minLength: 1, maxLength: 64, pattern: '^o-' },
    checkoutId: { type: 'string', maxLength: 64 },
    total: { type: 'number', minimum: 0 },
    subtotal: { type: 'number', minimum: 0 },
    revenue: { type: 'number' },
    shipping: { type: 'number', minimum: 0 },
    tax: { type: 'number', minimum: 0 },
    discount: { type: 'number', minimum: 0 },
    coupon: { type: 'string', maxLength: 32 },
    currency: { enum: ['EUR', 'USD', 'GBP'] },
    affiliation: { type: 'string' },
    paymentMethod: { enum: ['card', 'paypal', 'invoice'] },
    country: { type: 'string', pattern: '^[A-Z]{2}$' },
    itemCount: { type: 'integer', minimum: 1 },
    firstOrder: { type: 'boolean' },
    email: { type: 'string', format: 'email' },
    sessionId: { type: 'string' },
    storeId: { type: 'string' },
    path: { type: 'string', maxLength: 2048 },
    placedAt: { type: 'string', format: 'date-time' },
  },
  required: ['orderId', 'total', 'currency', 'itemCount', 'email', 'placedAt'],
  additionalProperties: false,
};

async function admin(server: ServerChild, path: string, body: unknown): Promise<void> {
  const res = await fetch(`${server.url}${path}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'x-api-key': ADMIN_KEY },
    body: JSON.stringify(body),
  });
  if (res.status !== 200) throw new Error(`PUT ${path}: ${res.status} ${await res.text()}`);
}

/** Registers the plan and checks that wrk's events pass it (a refusal would not be measured as work). */
async function registerPlan(server: ServerChild): Promise<void> {
  await admin(server, `/v1/schemas/${PLANNED}/${TYPE}`, { schema: ORDER_COMPLETED_SCHEMA });
  await admin(server, `/v1/schemas/${PLANNED}`, { mode: 'reject', unknownTypes: 'reject' });
}

export async function plansOverhead(ctx: BenchContext): Promise<void> {
  if (!ctx.picked.has('plans')) return;
  const server = await ctx.serve();
  await registerPlan(server);
  const apiKey = await ctx.ingestKey();
  const inFlight = SETTINGS.batchConnections * SETTINGS.batchSize;
  const side = (service: string, name: string) =>
    contender({
      scenario: 'plans',
      name,
      server,
      path: '/v1/events/batch',
      batch: SETTINGS.batchSize,
      format: 'plans',
      service,
      apiKey,
      after: bufferCheck(ctx, name, inFlight),
    });
  const planned = side(PLANNED, 'Tributary batch of 100, 20-property plan (reject)');
  const unplanned = side(UNPLANNED, 'Tributary batch of 100, same events, no plan');

  log('plans: warm-up, 2 s each');
  await warmUp([planned, unplanned], SETTINGS.batchConnections);
  await settle();
  await dropStreams(ctx.env);
  await interleave(
    [planned, unplanned].map((c) => ({
      name: c.name,
      run: async () => {
        const answered = await measureWrk(c, SETTINGS.batchConnections);
        await c.after?.(answered);
      },
    })),
  );
  const rows = {
    planned: planned.tally.row(planned.name, ['server']),
    unplanned: unplanned.tally.row(unplanned.name, ['server']),
  };
  rows.planned.ratios = ratios(rows.planned, { 'no plan': rows.unplanned });
  // Every event must pass: a refused one is answered inside the 202 and never buffered,
  // which bufferCheck reports as fewer entries than answered events.
  ctx.report.rows.push(rows.unplanned, rows.planned);
  ctx.report.checks['plans: plan / no plan'] = rows.planned.ratios['no plan'] ?? 0;
}
