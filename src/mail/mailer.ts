import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { Logger } from '../logger.js';

/** A message to send: always both a text and an HTML body. */
export interface MailMessage {
  to: string;
  subject: string;
  text: string;
  html: string;
}

export interface SentMail {
  messageId: string;
  /** Where the message was written when there is no SMTP server. */
  file?: string;
}

/** Sends mail over SMTP, or writes `.eml` files to an outbox folder when no SMTP_URL is set. */
export interface Mailer {
  send(message: MailMessage): Promise<SentMail>;
  /** `smtp` or `outbox`. */
  readonly mode: 'smtp' | 'outbox';
  close(): void;
}

export interface MailerOptions {
  smtpUrl: string | undefined;
  from: string;
  outboxDir: string;
  logger: Logger;
}

export function createMailer(options: MailerOptions): Mailer {
  if (options.smtpUrl) {
    const transport = nodemailer.createTransport(options.smtpUrl);
    return {
      mode: 'smtp',
      async send(message) {
        const info = await transport.sendMail({ from: options.from, ...message });
        return { messageId: info.messageId };
      },
      close: () => transport.close(),
    };
  }
  // No SMTP server: build the real RFC 822 message and keep it as a file, so nothing is
  // silently dropped and the message can be opened in any mail client.
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  return {
    mode: 'outbox',
    async send(message) {
      const info = await transport.sendMail({ from: options.from, ...message });
      await mkdir(options.outboxDir, { recursive: true });
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      const id = info.messageId.replace(/[^A-Za-z0-9@._-]/g, '');
      const file = path.join(options.outboxDir, `${stamp}-${id}.eml`);
      await writeFile(file, info.message as Buffer, { mode: 0o600 });
      options.logger.info({ file, subject: message.subject }, 'mail written to outbox (no SMTP_URL set)');
      return { messageId: info.messageId, file };
    },
    close: () => transport.close(),
  };
}
