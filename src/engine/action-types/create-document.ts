import { z } from 'zod';
import { defineActionType } from './define.js';
import { excerpt, quoted } from './describe.js';
import { multiLine, PATH_RULES, text, userPath } from './fields.js';

/** `create_document`: a file in the user's folder (markdown, HTML or text); rollback deletes it unless it was changed since. */
export const createDocument = defineActionType({
  type: 'create_document',
  description: 'Write a document into the user\'s folder.',
  payload: z
    .strictObject({
      title: text(500, 'Title; also names the file.').meta({ examples: ['Meeting notes'] }),
      content: multiLine(5_000_000, 'The document text (at most 5,000,000 characters).'),
      format: z.enum(['markdown', 'html', 'text']).default('markdown').meta({ description: 'File format; default markdown.' }),
      folder: userPath.optional().meta({ description: `Folder relative to your file root (${PATH_RULES}); created if missing.`, examples: ['notes/2026'] }),
    })
    .meta({ examples: [{ title: 'Meeting notes', content: '# Minutes\n\nWe agreed on oat milk.', folder: 'notes/2026' }] }),
  reversible: true,

  describe(p, about) {
    let headline = `Create the document ${quoted(p.title)}`;
    if (p.folder) headline += ` in the folder ${p.folder}`;
    headline += ` as ${p.format}`;
    const where = about ? ` (${about.spaceId}/${about.userId})` : '';
    return {
      headline,
      details: [
        { label: 'Title', value: p.title },
        { label: 'Folder', value: p.folder || 'the top folder' },
        { label: 'Format', value: p.format },
        { label: 'Content', value: p.content, format: 'text' },
      ],
      instructions: [
        `Write a ${p.format} document titled "${p.title}" in the user's folder${p.folder ? ` under "${p.folder}"` : ''}${where}, with this content:`,
        '',
        excerpt(p.content),
      ].join('\n'),
    };
  },
});
