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
      // A caller's input may end up in a log line (an error quoting it, Yoga's debug output):
      // no string is logged beyond a bounded prefix.
      // (`err` is left to its serializer, which pino applies after this formatter.)
      formatters: {
        log: (object) => {
          const { err, ...rest } = object;
          return { ...(boundLogValue(rest, 0) as Record<string, unknown>), ...(err === undefined ? {} : { err }) };
        },
      },
      serializers: { err: (error: unknown) => boundLogValue(error instanceof Error ? { ...pino.stdSerializers.err(error) } : error, 0) },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((arg) => (typeof arg === 'string' ? boundString(arg) : arg)) as Parameters<typeof method>);
        },
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

/** Longest string (in UTF-16 units) written to a log line; the rest is cut and counted. */
export const MAX_LOG_STRING = 2000;
const MAX_LOG_DEPTH = 8;

function boundString(value: string): string {
  return value.length > MAX_LOG_STRING ? `${value.slice(0, MAX_LOG_STRING)}…[${value.length - MAX_LOG_STRING} more characters cut]` : value;
}

/** Cuts long strings in plain objects, arrays and errors (serialized as pino would); leaves other values alone. */
function boundLogValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return boundString(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_LOG_DEPTH) return '[nested too deep]';
  if (value instanceof Error) return boundLogValue({ ...pino.stdSerializers.err(value) }, depth);
  if (Array.isArray(value)) {
    const items = value.slice(0, 100).map((v) => boundLogValue(v, depth + 1));
    return value.length > 100 ? [...items, `[${value.length - 100} more items cut]`] : items;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) out[key] = boundLogValue(v, depth + 1);
  return out;
}
