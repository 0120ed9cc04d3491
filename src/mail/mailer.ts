import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer';
import type { Logger } from '../logger.js';

/** An iTIP part (RFC 5546): sent as a `text/calendar; method=…` alternative, e.g. an invitation. */
export interface CalendarPart {
  method: 'REQUEST' | 'CANCEL' | 'PUBLISH';
  /** The iCalendar text (its METHOD property must match `method`). */
  content: string;
}

/** A message to send: a text body, and optionally HTML and a calendar part. */
export interface MailMessage {
  to: string | readonly string[];
  cc?: readonly string[];
  /** Blind copies: on the SMTP envelope only, never in a header. */
  bcc?: readonly string[];
  subject: string;
  text: string;
  html?: string;
  /** `<local@domain>`; default: a random one. A caller that must recognise its message later derives it (e.g. from an action id). */
  messageId?: string;
  calendar?: CalendarPart;
}

export interface SentMail {
  messageId: string;
  /** Where the message was written when there is no SMTP server. */
  file?: string;
  /** SMTP: the recipients the server accepted and refused (outbox: every recipient is "accepted"). */
  accepted: string[];
  rejected: string[];
  /** SMTP: the server's final reply (e.g. `250 OK: queued as …`). */
  response?: string;
}

/** Sends mail over SMTP, or writes `.eml` files to an outbox folder when no SMTP_URL is set. */
export interface Mailer {
  send(message: MailMessage): Promise<SentMail>;
  /** `smtp` or `outbox`. */
  readonly mode: 'smtp' | 'outbox';
  /** The sender (`MAIL_FROM`). */
  readonly from: string;
  /** The domain of the sender's address (for Message-IDs): `example.com` for `Engine <engine@example.com>`. */
  readonly domain: string;
  close(): void;
}

export interface MailerOptions {
  smtpUrl: string | undefined;
  from: string;
  outboxDir: string;
  logger: Logger;
}

/** The domain of the (last) address in a From value; `localhost` when it has none. */
export function senderDomain(from: string): string {
  const match = /@([A-Za-z0-9.-]+)\s*>?\s*$/.exec(from.trim());
  return match?.[1]?.toLowerCase() ?? 'localhost';
}

function toNodemailer(from: string, message: MailMessage): Mail.Options {
  const { to, cc, bcc, calendar, messageId, ...rest } = message;
  return {
    from,
    ...rest,
    to: typeof to === 'string' ? to : [...to],
    ...(cc?.length ? { cc: [...cc] } : {}),
    ...(bcc?.length ? { bcc: [...bcc] } : {}),
    ...(messageId ? { messageId } : {}),
    ...(calendar ? { icalEvent: { method: calendar.method, content: calendar.content, filename: 'invite.ics' } } : {}),
  };
}

const addresses = (list: unknown): string[] => (Array.isArray(list) ? list.map((a) => (typeof a === 'string' ? a : String((a as { address?: string }).address ?? a))) : []);

export function createMailer(options: MailerOptions): Mailer {
  const domain = senderDomain(options.from);
  if (options.smtpUrl) {
    const transport = nodemailer.createTransport(options.smtpUrl);
    return {
      mode: 'smtp',
      from: options.from,
      domain,
      async send(message) {
        const info = await transport.sendMail(toNodemailer(options.from, message));
        return { messageId: info.messageId, accepted: addresses(info.accepted), rejected: addresses(info.rejected), response: info.response };
      },
      close: () => transport.close(),
    };
  }
  // No SMTP server: build the real RFC 822 message and keep it as a file, so nothing is
  // silently dropped and the message can be opened in any mail client.
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  return {
    mode: 'outbox',
    from: options.from,
    domain,
    async send(message) {
      // A stream transport would keep Bcc as a header: the file is the message as it goes out,
      // so blind copies are on the envelope only (as over SMTP).
      const { bcc, ...visible } = message;
      const list = (v: string | readonly string[] | undefined) => (v === undefined ? [] : typeof v === 'string' ? [v] : [...v]);
      const withBcc = bcc?.length ? { from: options.from, to: [...list(message.to), ...list(message.cc), ...bcc] } : undefined;
      const info = await transport.sendMail({ ...toNodemailer(options.from, visible), ...(withBcc ? { envelope: withBcc } : {}) });
      await mkdir(options.outboxDir, { recursive: true });
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      const id = info.messageId.replace(/[^A-Za-z0-9@._-]/g, '');
      const file = path.join(options.outboxDir, `${stamp}-${id}.eml`);
      await writeFile(file, info.message as Buffer, { mode: 0o600 });
      options.logger.info({ file, subject: message.subject }, 'mail written to outbox (no SMTP_URL set)');
      const envelope = info.envelope as { to?: string[] } | undefined;
      return { messageId: info.messageId, file, accepted: envelope?.to ?? [], rejected: [] };
    },
    close: () => transport.close(),
  };
}
