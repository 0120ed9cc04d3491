import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { assertOutboundAllowed, createOutboundFetch, isPrivateAddress, OutboundRefusedError, OutboundTimeoutError } from '../../src/engine/outbound.js';

describe('outbound requests', () => {
  it('classes loopback, private, link-local and unique-local addresses as private, public ones not', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '0.0.0.0', '::1', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '64:ff9b::7f00:1', '64:ff9b::a9fe:a9fe', '2002:7f00:1::', '::7f00:1', 'fec0::1', '198.18.0.1', '224.0.0.1', 'ff02::1']) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '2001:4860:4860::8888', '172.32.0.1']) expect(isPrivateAddress(a), a).toBe(false);
  });

  it('allows loopback by default and refuses it, resolved names included, with OUTBOUND_BLOCK_PRIVATE', async () => {
    await expect(assertOutboundAllowed('http://127.0.0.1:9/x', { blockPrivate: false })).resolves.toBeInstanceOf(URL);
    await expect(assertOutboundAllowed('http://127.0.0.1:9/x', { blockPrivate: true })).rejects.toThrow(/private or loopback.*OUTBOUND_BLOCK_PRIVATE/);
    await expect(assertOutboundAllowed('http://localhost:9/x', { blockPrivate: true })).rejects.toBeInstanceOf(OutboundRefusedError);
    await expect(assertOutboundAllowed('http://[::1]:9/x', { blockPrivate: true })).rejects.toBeInstanceOf(OutboundRefusedError);
    await expect(assertOutboundAllowed('file:///etc/passwd', { blockPrivate: false })).rejects.toThrow(/only http and https/);
  });

  it('gives up on a request after the timeout, and the blocked address is never contacted', async () => {
    let hits = 0;
    const server = createServer(() => { hits += 1; /* never answers */ });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    try {
      const started = Date.now();
      await expect(createOutboundFetch({ blockPrivate: false, timeoutMs: 300 })(url)).rejects.toBeInstanceOf(OutboundTimeoutError);
      expect(Date.now() - started).toBeLessThan(3000);
      expect(hits).toBe(1);
      await expect(createOutboundFetch({ blockPrivate: true, timeoutMs: 300 })(url)).rejects.toBeInstanceOf(OutboundRefusedError);
      expect(hits).toBe(1);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
