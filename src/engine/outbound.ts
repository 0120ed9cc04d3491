import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/**
 * Outbound HTTP for handlers and webhooks: every request has a deadline
 * (`OUTBOUND_TIMEOUT_MS`), and with `OUTBOUND_BLOCK_PRIVATE=true` none may reach a loopback,
 * private, link-local, unique-local, multicast or reserved address, nor an IPv6 translation
 * prefix that leads to IPv4 (NAT64, 6to4, IPv4-compatible). Every address the host name resolves
 * to is checked right before the request, and redirects are then not followed. The request then
 * resolves the name again: a DNS server that answers differently the second time (DNS
 * rebinding) is not stopped by this check; deployments that need that guarantee also filter
 * egress at the network. By default such addresses are allowed: internal systems are a normal target.
 */

/** A request refused before it was sent: the URL is not allowed. Not worth retrying. */
export class OutboundRefusedError extends Error {
  override name = 'OutboundRefusedError';
}

/** The request took longer than `OUTBOUND_TIMEOUT_MS`. Worth retrying. */
export class OutboundTimeoutError extends Error {
  override name = 'OutboundTimeoutError';
}

export interface OutboundOptions {
  blockPrivate: boolean;
  timeoutMs: number;
}

const PRIVATE = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  ['192.0.0.0', 24],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) PRIVATE.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  // Unspecified, loopback, and IPv4-compatible (::a.b.c.d) addresses.
  ['::', 96],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
  // Translation prefixes that reach IPv4 addresses, private ones included: NAT64 and 6to4.
  ['64:ff9b::', 96],
  ['64:ff9b:1::', 48],
  ['2002::', 16],
] as const) PRIVATE.addSubnet(net, bits, 'ipv6');

/** Whether `address` (an IP literal) is loopback, private, link-local or unique-local (IPv4-mapped IPv6 included). */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return PRIVATE.check(mapped[1]!, 'ipv4');
    return PRIVATE.check(address, 'ipv6');
  }
  return false;
}

/**
 * Checks that `url` may be called: http or https, and with `blockPrivate` no private address
 * behind its host. Throws {@link OutboundRefusedError} saying why (the host, never credentials).
 */
export async function assertOutboundAllowed(url: string | URL, options: Pick<OutboundOptions, 'blockPrivate'>): Promise<URL> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new OutboundRefusedError('not a valid URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new OutboundRefusedError(`only http and https URLs are allowed, not ${parsed.protocol.replace(/:$/, '')}`);
  }
  if (!options.blockPrivate) return parsed;
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  const addresses = isIP(host) ? [host] : await lookup(host, { all: true }).then(
    (found) => found.map((a) => a.address),
    () => {
      throw new OutboundRefusedError(`the host ${host} could not be resolved`);
    },
  );
  if (addresses.some(isPrivateAddress)) {
    throw new OutboundRefusedError(`${host} is a private or loopback address, refused because OUTBOUND_BLOCK_PRIVATE is set`);
  }
  return parsed;
}

/** A `fetch` with the deadline and the address check; aborts by the caller's own signal too. */
export function createOutboundFetch(options: OutboundOptions, base: typeof fetch = globalThis.fetch): typeof fetch {
  return async (input, init = {}) => {
    const url = input instanceof Request ? input.url : input;
    await assertOutboundAllowed(url, options);
    const deadline = AbortSignal.timeout(options.timeoutMs);
    const signal = init.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
    try {
      return await base(input, { ...init, signal, ...(options.blockPrivate ? { redirect: 'manual' as const } : {}) });
    } catch (error) {
      if (deadline.aborted) throw new OutboundTimeoutError(`no answer within ${options.timeoutMs} ms`, { cause: error });
      throw error;
    }
  };
}
