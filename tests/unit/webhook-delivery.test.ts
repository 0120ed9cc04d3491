import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_RETRY_DELAY_MS, retryDelayMs, webhookBody, webhookIdOf } from '../../src/engine/webhook-delivery.js';
import { checkWebhookSecret } from '../../src/engine/webhook-endpoints.js';

describe('outbound webhook pieces', () => {
  it('backs off exponentially from the base and never waits more than an hour', () => {
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, 5000))).toEqual([5000, 10_000, 20_000, 40_000]);
    expect(retryDelayMs(30, 5000)).toBe(MAX_RETRY_DELAY_MS);
    expect(MAX_RETRY_DELAY_MS).toBe(3_600_000);
  });

  it('builds the body of the contract, with its keys in a fixed order, and a msg_ id stable for one delivery', () => {
    const body = webhookBody({ actionId: 'a1', status: 'COMPLETED', seq: 4, message: 'Done', statusAt: new Date('2026-11-27T10:00:00.123Z') });
    expect(body).toBe('{"type":"action.status","actionId":"a1","status":"COMPLETED","seq":4,"message":"Done","timestamp":"2026-11-27T10:00:00.123Z"}');
    expect(webhookIdOf('0f8fad5b-d9cb-469f-a165-70867728950e')).toBe('msg_0f8fad5bd9cb469fa16570867728950e');
  });

  it('takes only Standard Webhooks secrets of 24 to 64 bytes, refusing others by naming input.secret without echoing them', () => {
    for (const bytes of [24, 32, 64]) {
      const secret = `whsec_${randomBytes(bytes).toString('base64')}`;
      expect(checkWebhookSecret(secret)).toBe(secret);
    }
    for (const bad of ['', 'whsec_', `whsec_${randomBytes(23).toString('base64')}`, `whsec_${randomBytes(65).toString('base64')}`, 'sk_live_abcdefabcdefabcdefabcdef', 'whsec_no spaces allowed here!!']) {
      let error: unknown;
      try {
        checkWebhookSecret(bad);
      } catch (e) {
        error = e;
      }
      expect(error, bad).toMatchObject({ code: 'INVALID_INPUT', field: ['input', 'secret'] });
      if (bad.length > 6) expect((error as Error).message).not.toContain(bad);
    }
  });
});
