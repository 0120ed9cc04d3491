import { z } from 'zod';
import { defineActionType } from './define.js';

/**
 * `noop`, for benchmarks and tests: does nothing. Not built in: registered only when
 * `ENABLE_NOOP_HANDLER` is set (see `builtInActionTypes`).
 */
export const noop = defineActionType({
  type: 'noop',
  description: 'Does nothing and completes at once (benchmarks and tests).',
  payload: z
    .strictObject({ note: z.string().max(1000).optional().meta({ description: 'Free text, kept with the action; at most 1,000 characters.' }) })
    .meta({ examples: [{ note: 'bench #1' }] }),
  reversible: true,
  describe: (p) => ({ headline: 'Do nothing', details: [{ label: 'Note', value: p.note }], instructions: 'Nothing to do: complete this task.' }),
});
