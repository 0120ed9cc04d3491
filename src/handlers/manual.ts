import { BUILT_IN_ACTION_TYPES } from '../engine/action-types.js';
import type { ActionTypeDefinition } from '../engine/action-types/define.js';
import { describePayload, truncateChars } from '../engine/action-types/describe.js';
import { defineHandler } from './define-handler.js';

/** Longest status message while waiting, in characters (a headline can quote a long subject). */
const MAX_WAITING_MESSAGE_CHARS = 300;

const DEFINITIONS = new Map<string, ActionTypeDefinition>(BUILT_IN_ACTION_TYPES.map((t) => [t.type, t]));

/**
 * The last link of every chain but make_payment's: hands the action to a human operator. It only says what to
 * do: it returns `waiting` with the key `manual:<action id>` and the task's instructions (from
 * the type's `describe`), and the engine opens the one operator task for that key in the same
 * step that records the wait. The action stays EXECUTING until an operator completes the task.
 *
 * A repeat (a retry, a recovered job, racing workers) returns the same key, and the engine
 * opens no second task for a key that has an open one: `repeat: 'provider'`, the engine being
 * the provider that deduplicates.
 */
export const manualHandler = defineHandler({
  name: 'manual',
  kind: 'manual',
  // Not make_payment: a payment runs only through a configured payment integration
  // (payment.webhook); without one it fails, it is never handed to an operator.
  types: BUILT_IN_ACTION_TYPES.filter((t) => t.type !== 'make_payment'),
  repeat: 'provider',

  async execute({ action }) {
    const described = describePayload(DEFINITIONS.get(action.type), action.type, action.payload, { parsed: true, about: action });
    const instructions = [
      described.instructions,
      '',
      `Action ${action.id} (${action.type}) for user ${action.userId}. Complete this task with the outcome when done.`,
    ].join('\n');
    return {
      status: 'waiting',
      key: `manual:${action.id}`,
      message: truncateChars(`Waiting for an operator: ${described.headline}`, MAX_WAITING_MESSAGE_CHARS),
      task: { instructions },
    };
  },
});
