import type { Mailer } from '../mail/mailer.js';
import { PermanentHandlerError, RetryableHandlerError } from './types.js';

/** What nodemailer's errors carry. */
interface SmtpError {
  code?: string;
  originalCode?: string;
  responseCode?: number;
  response?: string;
}

/** System errors that mean no connection was made, so nothing was handed over. */
const NOT_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/**
 * What a failed send means for a handler that must not send twice: an Error to throw when the
 * outcome is known (a server's refusal: 5xx permanent, 4xx retried; no connection made:
 * retried; refused before sending: permanent), or `null` when the conversation broke off
 * mid-way (a timeout, a dropped connection) and the mail may have been delivered — then the
 * handler must not try again but ask an operator.
 */
export function mailFailure(error: unknown, mode: Mailer['mode']): Error | null {
  const e = (typeof error === 'object' && error !== null ? error : {}) as SmtpError;
  const reply = e.response ? ` (${e.response.slice(0, 200)})` : '';
  if (e.responseCode && e.responseCode >= 500) return new PermanentHandlerError(`the mail server refused the email${reply}`);
  if (e.responseCode && e.responseCode >= 400) return new RetryableHandlerError(`the mail server asked to try again later${reply}`);
  if (e.code === 'EENVELOPE' || e.code === 'EMESSAGE') return new PermanentHandlerError('the mail server refused the message before it was sent');
  if (e.code === 'EAUTH') return new PermanentHandlerError('the mail server refused the login (check SMTP_URL)');
  if (mode === 'outbox') return new RetryableHandlerError(`the mail could not be written to the outbox${e.code ? ` (${e.code})` : ''}`);
  if (e.originalCode && NOT_CONNECTED.has(e.originalCode)) return new RetryableHandlerError(`the mail server could not be reached (${e.originalCode})`);
  return null;
}
