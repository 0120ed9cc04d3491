import { SMTPServer, type SMTPServerSession } from 'smtp-server';

/** One message as the server received it. */
export interface ReceivedMail {
  /** The SMTP envelope (MAIL FROM, RCPT TO). */
  from: string;
  to: string[];
  /** The raw RFC 822 message. */
  raw: string;
  /** A header's value (unfolded, encoded words decoded), or undefined when the message has none. */
  header(name: string): string | undefined;
}

export interface TestSmtpServer {
  port: number;
  /** `smtp://127.0.0.1:<port>` */
  url: string;
  received: ReceivedMail[];
  /**
   * When set, the server reads a message and keeps it (in `received`) but does not answer the
   * end of DATA until the returned promise settles: a sender cut off then cannot know the
   * message arrived.
   */
  holdReply: ((mail: ReceivedMail) => Promise<void>) | null;
  /** Recipients refused at RCPT TO with `550 5.1.1 no such user`. */
  rejectRecipients: Set<string>;
  /** Cuts every open client connection (as a network failure would), without a reply. */
  dropConnections(): void;
  /** Resolves when `n` messages have arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Undoes RFC 2047 encoded words (`=?UTF-8?Q?…?=`, `=?UTF-8?B?…?=`) in a header value. */
function decodeWords(value: string): string {
  return value
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_, _charset: string, kind: string, text: string) => {
      if (kind.toUpperCase() === 'B') return Buffer.from(text, 'base64').toString('utf8');
      const bytes = text.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
      return Buffer.from(bytes, 'latin1').toString('utf8');
    });
}

function parse(raw: string, session: SMTPServerSession): ReceivedMail {
  const head = raw.split(/\r?\n\r?\n/, 1)[0]!.replace(/\r?\n[ \t]+/g, ' ');
  const headers = head.split(/\r?\n/);
  return {
    from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
    to: session.envelope.rcptTo.map((r) => r.address),
    raw,
    header(name) {
      const line = headers.find((h) => h.toLowerCase().startsWith(`${name.toLowerCase()}:`));
      return line === undefined ? undefined : decodeWords(line.slice(name.length + 1).trim());
    },
  };
}

/** A real SMTP server (the `smtp-server` package) on a free loopback port, no TLS, no auth. */
export async function startSmtpServer(): Promise<TestSmtpServer> {
  const received: ReceivedMail[] = [];
  const waiters: Array<() => void> = [];
  const state: TestSmtpServer = {
    port: 0,
    url: '',
    received,
    holdReply: null,
    rejectRecipients: new Set(),
    waitFor(n, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (received.length >= n) {
            clearTimeout(timer);
            resolve();
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => reject(new Error(`the SMTP server received ${received.length} of ${n} messages within ${timeoutMs} ms`)), timeoutMs);
        if (!check()) waiters.push(() => void check());
      });
    },
    dropConnections() {
      // smtp-server has no public way to drop a client: its connection set and sockets.
      for (const connection of (server as unknown as { connections: Set<{ _socket: { destroy(): void } }> }).connections) connection._socket.destroy();
    },
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['STARTTLS', 'AUTH'],
    authOptional: true,
    logger: false,
    onRcptTo(address, _session, callback) {
      if (!state.rejectRecipients.has(address.address)) return callback();
      const error = Object.assign(new Error('5.1.1 no such user'), { responseCode: 550 });
      callback(error);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const mail = parse(Buffer.concat(chunks).toString('utf8'), session);
        received.push(mail);
        for (const w of waiters.splice(0)) w();
        const hold = state.holdReply;
        if (hold) void hold(mail).finally(() => callback());
        else callback();
      });
    },
  });
  server.on('error', () => undefined); // a client killed mid-session is normal here
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.server.address() as { port: number }).port;
  state.url = `smtp://127.0.0.1:${state.port}`;
  return state;
}
