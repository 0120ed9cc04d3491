import { noop } from '../engine/action-types/noop.js';
import { defineHandler } from './define-handler.js';

/**
 * Serves `noop`: completes at once with provider `noop`; rolling back does nothing. Having no
 * effect, a repeat is harmless by looking (`check`): there is nothing that could have happened twice.
 */
export const noopHandler = defineHandler({
  name: 'noop',
  kind: 'api',
  types: [noop],
  repeat: 'check',
  async execute() {
    return { status: 'completed', provider: 'noop', externalRef: null, data: { ok: true }, rollbackData: null };
  },
  async rollback() {},
});
