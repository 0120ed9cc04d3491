import { sendEmail } from '../engine/action-types/send-email.js';
import { listWords } from '../engine/action-types/describe.js';
import { defineHandler } from './define-handler.js';
import { mailFailure } from './mail-outcome.js';

/** The Message-ID of the mail an action sends: `<action-<id>@<domain of MAIL_FROM>>`, so it can be found later. */
export function actionMessageId(actionId: string, domain: string): string {
  return `<action-${actionId}@${domain}>`;
}

/**
 * `send_email` over SMTP (`SMTP_URL`), or as an `.eml` file in `OUTBOX_DIR` when no SMTP server
 * is set (the engine's own mail goes the same way, so the handler is always configured). To,
 * Cc, Bcc (envelope only), subject, text and optional HTML; the Message-ID is derived from the
 * action id and becomes the receipt's external reference.
 *
 * SMTP cannot tell a repeat from a new message (`repeat: 'none'`): the engine never runs an
 * interrupted attempt again, and this handler never retries a send whose outcome it cannot know.
 * A server that answered with a refusal is clear (5xx: permanent; 4xx: retried); a connection
 * that was never made is retried; a connection lost or timed out mid-conversation may have
 * delivered the message, so it waits for an operator to confirm, like a crash. Not reversible.
 */
export const sendEmailSmtpHandler = defineHandler({
  name: 'send_email.smtp',
  kind: 'api',
  types: [sendEmail],
  repeat: 'none',

  async execute({ action, payload, services, progress }) {
    const { mailer } = services;
    await progress(`Sending the email to ${listWords(payload.to)}…`);
    const messageId = actionMessageId(action.id, mailer.domain);
    let sent;
    try {
      sent = await mailer.send({
        to: payload.to,
        ...(payload.cc?.length ? { cc: payload.cc } : {}),
        ...(payload.bcc?.length ? { bcc: payload.bcc } : {}),
        subject: payload.subject,
        text: payload.body,
        ...(payload.html ? { html: payload.html } : {}),
        messageId,
      });
    } catch (error) {
      const known = mailFailure(error, mailer.mode);
      if (known) throw known;
      // Lost mid-conversation (a timeout, a dropped connection): it may have been delivered.
      services.logger.warn({ err: error, actionId: action.id }, 'SMTP conversation broke off; the outcome is unknown');
      return {
        status: 'waiting',
        key: `confirm:${action.id}`,
        message: `Waiting for an operator: the mail server stopped answering while the email to ${listWords(payload.to)} was being sent; did it go out?`,
        task: {
          instructions:
            `The connection to the mail server broke off while sending this email (Message-ID ${messageId}), so it may or may not have been delivered, ` +
            'and sending it again could deliver it twice. Check (e.g. the mail server\'s log or a recipient\'s inbox for that Message-ID): ' +
            'if it was delivered, complete this task with what you found (e.g. {"reference": "' + messageId + '"}); if not, send it yourself and complete the task.',
        },
      };
    }
    return {
      status: 'completed',
      provider: mailer.mode === 'smtp' ? 'smtp' : 'outbox',
      externalRef: messageId,
      data: {
        messageId,
        via: mailer.mode === 'smtp' ? 'smtp' : 'outbox',
        ...(sent.file ? { file: sent.file.split(/[\\/]/).pop() } : {}),
        accepted: sent.accepted,
        rejected: sent.rejected,
        ...(sent.response ? { serverReply: sent.response.slice(0, 200) } : {}),
      },
    };
  },
});
