/** A tracking-plan schema for an order (ARCHITECTURE §14), as the plan tests and bench register it. */
export const ORDER_SCHEMA = {
  type: 'object',
  properties: {
    orderId: { type: 'string', minLength: 1 },
    total: { type: 'number', minimum: 0 },
    currency: { enum: ['EUR', 'USD'] },
  },
  required: ['orderId', 'total'],
  additionalProperties: false,
} as const;
