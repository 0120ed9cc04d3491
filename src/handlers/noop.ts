import { noop } from '../engine/action-types/noop.js';
import { defineHandler } from './define-handler.js';

/**
 * Serves `noop`: completes at once with provider `noop`; rolling back does nothing. Having no
 * effect, a repeat is harmless without looking, as with a provider that deduplicates by the
 * idempotency key (`provider`): the engine writes its execution row with the outcome, not before.
 */
export const noopHandler = defineHandler({
  name: 'noop',
  kind: 'api',
  types: [noop],
  repeat: 'provider',
  async execute() {
    return { status: 'completed', provider: 'noop', externalRef: null, data: { ok: true }, rollbackData: null };
  },
  async rollback() {},
});
