import { z } from 'zod';
import { defineActionType } from './define.js';
import { excerpt, instructionLines, listWords, quoted } from './describe.js';
import { email, multiLine, text } from './fields.js';

/** `send_email`: a mail from the user, over SMTP (spec §3). Not reversible: a sent mail stays sent. */
export const sendEmail = defineActionType({
  type: 'send_email',
  description: 'Send an email on the user\'s behalf.',
  payload: z
    .strictObject({
      to: z.array(email).min(1, { error: 'needs at least one recipient' }).max(100).meta({ description: 'Recipients (1 to 100 email addresses).' }),
      cc: z.array(email).max(100).optional().meta({ description: 'Copy recipients (at most 100 email addresses).' }),
      bcc: z.array(email).max(100).optional().meta({ description: 'Blind copy recipients, not shown to the others (at most 100 email addresses).' }),
      subject: text(998, 'Subject line (at most 998 characters).').meta({ examples: ['Quarterly report'] }),
      body: multiLine(1_000_000, 'Plain-text body.').min(1, { error: 'must not be empty' }),
      html: multiLine(2_000_000, 'Optional HTML body, sent alongside the text.').optional(),
    })
    .meta({ examples: [{ to: ['ada@example.com'], subject: 'Quarterly report', body: 'Hi Ada,\n\nthe report is attached.\n\nGrace' }] }),
  reversible: false,

  describe(p) {
    return {
      headline: `Send an email to ${listWords(p.to)} with the subject ${quoted(p.subject)}`,
      details: [
        { label: 'To', value: p.to },
        { label: 'Cc', value: p.cc },
        { label: 'Bcc', value: p.bcc },
        { label: 'Subject', value: p.subject },
        { label: 'Message', value: p.body, format: 'text' },
        { label: 'HTML version (source)', value: p.html, format: 'json' },
      ],
      instructions: instructionLines(
        'Send this email on the user\'s behalf.',
        ['To', p.to],
        ['Cc', p.cc],
        ['Bcc', p.bcc],
        ['Subject', p.subject],
        '',
        excerpt(p.body),
        p.html ? '\n(An HTML version is in the action\'s payload.)' : null,
      ),
    };
  },
});
