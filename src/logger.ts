import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on stdout. Anything that may carry a secret is redacted by path, so a
 * careless `logger.info({ req })` cannot leak an API key or a password.
 */
export function createLogger(options: { level: string; name?: string }, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      name: options.name ?? 'action-engine',
      level: options.level,
      redact: {
        paths: [
          'authorization',
          '*.authorization',
          'headers.authorization',
          '*.headers.authorization',
          'headers.cookie',
          '*.headers.cookie',
          'password',
          '*.password',
          'apiKey',
          '*.apiKey',
          'token',
          '*.token',
          'connectionParams',
          '*.connectionParams',
          // Handler secrets (upsertHandlerConfig's write-only field) and GraphQL variables that may carry them.
          'secrets',
          '*.secrets',
          '*.*.secrets',
          '*.*.*.secrets',
          'secretsCiphertext',
          '*.secretsCiphertext',
          'variables',
          '*.variables',
          'args[*].variables',
          'args[*].secrets',
          'args[*].*.secrets',
        ],
        censor: '[redacted]',
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** Removes the password from a URL before it is logged or shown. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}
