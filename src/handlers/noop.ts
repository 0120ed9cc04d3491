import { z } from 'zod';
import type { ActionTypeDefinition } from '../engine/action-types.js';
import type { ActionHandler } from './types.js';

/**
 * The `noop` action type, for benchmarks and tests: not built in, registered by the composition
 * root when `ENABLE_NOOP_HANDLER` is set.
 */
export const NOOP_ACTION_TYPE: ActionTypeDefinition = {
  type: 'noop',
  description: 'Does nothing and completes at once (benchmarks and tests).',
  payload: z.strictObject({ note: z.string().max(1000).optional() }),
  reversible: true,
};

/** Serves `noop`: completes at once with provider `noop`; rolling back does nothing. */
export const noopHandler: ActionHandler = {
  name: 'noop',
  kind: 'api',
  types: [NOOP_ACTION_TYPE.type],
  isConfigured: () => true,
  async execute() {
    return { status: 'completed', provider: 'noop', externalRef: null, data: { ok: true }, rollbackData: null };
  },
  async rollback() {},
};
