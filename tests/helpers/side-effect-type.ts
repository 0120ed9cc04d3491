import { z } from 'zod';
import { defineActionType } from '../../src/engine/action-types.js';

/** The action type of the worker-crash test's handler: a side effect that takes `ms` to finish. */
export const sideEffectType = defineActionType({
  type: 'test_side_effect',
  description: 'test',
  payload: z.strictObject({ ms: z.number().optional() }),
  reversible: false,
});
