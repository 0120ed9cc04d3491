import type { IncomingMessage, ServerResponse } from 'node:http';

/** The body was larger than the limit (counted on the bytes read, whatever the headers say). */
export class BodyTooLargeError extends Error {
  override name = 'BodyTooLargeError';
  constructor(readonly limit: number) {
    super(`request body larger than ${limit} bytes`);
  }
}

/**
 * Reads a request body, counting the bytes actually received, so neither a missing
 * Content-Length (`Transfer-Encoding: chunked`) nor a false one lets more than `limit` bytes in.
 * Refuses early on a declared length over the limit. Throws {@link BodyTooLargeError}.
 */
export function readBodyWithin(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new BodyTooLargeError(limit));
  // Events rather than `for await`: leaving that loop early destroys the request, and with it
  // the socket the 413 must be written to.
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        done();
        req.pause();
        reject(new BodyTooLargeError(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (error: Error) => {
      done();
      reject(error);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * Answers 413 and ends the connection cleanly: the answer is written with `Connection: close`,
 * the rest of the upload is not read, and the socket is closed once the answer is out (or
 * after a short grace, for a client that keeps sending).
 */
export function refuseTooLarge(req: IncomingMessage, res: ServerResponse, body: string, contentType: string, headers: Record<string, string> = {}): void {
  res.shouldKeepAlive = false;
  res.writeHead(413, { ...headers, 'content-type': contentType, 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body, () => {
    // Give the client a moment to read the answer before the socket goes.
    setTimeout(() => req.socket.destroy(), 500).unref();
  });
}
