import { z } from 'zod';
import { defineActionType } from './define.js';
import { instructionLines } from './describe.js';
import { filePath, normalizeUserPath, PATH_RULES } from './fields.js';

/** `move_file`: move or rename a file inside the user's file root; rollback moves it back. */
export const moveFile = defineActionType({
  type: 'move_file',
  description: 'Move or rename a file inside the user\'s file root.',
  payload: z
    .strictObject({
      from: filePath.meta({ description: `The file to move, relative to your file root (${PATH_RULES}; not the root itself).` }),
      to: filePath.meta({ description: `Where it goes, relative to your file root (${PATH_RULES}; not the root itself); must differ from from ("a.txt" and "./a.txt" are the same).` }),
    })
    .refine((m) => normalizeUserPath(m.to) === '' || normalizeUserPath(m.from) !== normalizeUserPath(m.to), {
      error: 'must differ from from (both name the same path)',
      path: ['to'],
    })
    .meta({
      description: 'from and to must name different paths once normalised ("a.txt" and "./a.txt" are the same).',
      examples: [{ from: 'inbox/invoice.pdf', to: 'reports/2026/invoice.pdf' }],
    }),
  reversible: true,

  describe(p, about) {
    return {
      headline: `Move the file ${p.from} → ${p.to}`,
      details: [
        { label: 'From', value: p.from },
        { label: 'To', value: p.to },
      ],
      instructions: instructionLines(
        `Move the file "${p.from}" to "${p.to}" inside the user's folder${about ? ` (${about.spaceId}/${about.userId})` : ''}.`,
      ),
    };
  },
});
