import { describe, expect, it } from 'vitest';
import {
  hashApprovalToken,
  isWellFormedToken,
  newApprovalToken,
  newOneTimeCode,
  payloadHash,
  tokenState,
  verifyCode,
} from '../../src/engine/approval-tokens.js';
import { parseDecisionForm, renderConfirmationPage, renderErrorPage } from '../../src/http/approval-pages.js';
import { renderApprovalEmail } from '../../src/mail/approval-email.js';

const now = new Date('2026-11-21T12:00:00Z');
const row = { usedAt: null, voidedAt: null, expiresAt: new Date('2026-11-22T12:00:00Z'), payloadHash: 'h' };
const action = {
  id: '3f0c2a4e-0000-4000-8000-000000000001',
  type: 'order',
  payload: { provider: '<script>alert(1)</script>', items: [{ name: 'Latte', price: 5.5, quantity: 1 }] },
  priority: 5,
  scheduledFor: null,
  createdAt: now,
};

describe('approval tokens', () => {
  it('carry 256 random bits as 43 base64url characters, stored as their SHA-256', () => {
    const a = newApprovalToken();
    const b = newApprovalToken();
    expect(a.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.token).not.toBe(b.token);
    expect(a.tokenHash).toMatch(/^[0-9a-f]{64}$/);
    expect(hashApprovalToken(a.token)).toBe(a.tokenHash);
    expect(isWellFormedToken(a.token)).toBe(true);
    expect(isWellFormedToken('short')).toBe(false);
    expect(isWellFormedToken(`${a.token}/../x`)).toBe(false);
  });

  it('are valid only unused, not voided, unexpired and bound to the same payload', () => {
    expect(tokenState(row, 'h', now)).toBe('valid');
    expect(tokenState(null, 'h', now)).toBe('unknown');
    expect(tokenState({ ...row, usedAt: now }, 'h', now)).toBe('used');
    expect(tokenState({ ...row, voidedAt: now }, 'h', now)).toBe('voided');
    expect(tokenState(row, 'other', now)).toBe('payload_changed');
    expect(tokenState(row, 'h', row.expiresAt)).toBe('expired');
  });

  it('bind to a payload hash that does not depend on key order', () => {
    expect(payloadHash({ a: 1, b: { c: 2, d: [1, 2] } })).toBe(payloadHash({ b: { d: [1, 2], c: 2 }, a: 1 }));
    expect(payloadHash({ a: 1 })).not.toBe(payloadHash({ a: 2 }));
  });

  it('pair with an 8-digit one-time code that verifies only itself', () => {
    const { code, codeHash } = newOneTimeCode();
    expect(code).toMatch(/^\d{8}$/);
    expect(verifyCode(code, codeHash)).toBe(true);
    expect(verifyCode(code === '00000000' ? '00000001' : '00000000', codeHash)).toBe(false);
  });
});

describe('the decision form', () => {
  it('accepts approve and reject with a reason and a code', () => {
    expect(parseDecisionForm('decision=reject&reason=too+much')).toEqual({ decision: 'reject', reason: 'too much', code: null });
    expect(parseDecisionForm('decision=approve&code=1234-5678')).toEqual({ decision: 'approve', reason: null, code: '12345678' });
  });

  it('refuses anything else, naming the field', () => {
    expect(parseDecisionForm('decision=maybe')).toEqual({ error: expect.stringMatching(/"decision"/) });
    expect(parseDecisionForm('')).toEqual({ error: expect.stringMatching(/"decision" is required/) });
    expect(parseDecisionForm('decision=approve&decision=reject')).toEqual({ error: expect.stringMatching(/more than once/) });
    expect(parseDecisionForm(`decision=reject&reason=${'x'.repeat(1001)}`)).toEqual({ error: expect.stringMatching(/"reason"/) });
  });
});

describe('approval pages and email', () => {
  it('answer unusable links with a clear page and a 4xx status', () => {
    expect(renderErrorPage('unknown').status).toBe(404);
    expect(renderErrorPage('used').status).toBe(409);
    expect(renderErrorPage('expired').status).toBe(410);
    expect(renderErrorPage('wrong_code').status).toBe(403);
    expect(renderErrorPage('too_many_attempts').status).toBe(429);
  });

  it('escape hostile payload values and post both forms to the token URL', () => {
    const token = newApprovalToken().token;
    const html = renderConfirmationPage({
      action,
      requestedBy: { name: 'agent:alice', role: 'agent' },
      userHandle: 'alice',
      expiresAt: row.expiresAt,
      token,
      needsCode: false,
    });
    expect(html).not.toContain('<script>alert(1)</script>');
    expect(html).toContain('&lt;script&gt;');
    expect(html.match(/<form[^>]*method="post"[^>]*action="\/approvals\/[A-Za-z0-9_-]{43}"/g)).toHaveLength(2);
    expect(html).toMatch(/name="decision"[^>]*value="approve"|value="approve"[^>]*name="decision"/);
    expect(html).toMatch(/name="reason"/);
    expect(html).not.toMatch(/name="code"/);
    const withCode = renderConfirmationPage({
      action,
      requestedBy: { name: 'a', role: 'agent' },
      userHandle: 'alice',
      expiresAt: row.expiresAt,
      token,
      needsCode: true,
    });
    expect(withCode).toMatch(/name="code"/);
  });

  it('mail the link in both parts, with a subject that cannot carry extra headers', () => {
    const mail = renderApprovalEmail({
      action: { ...action, payload: { ...action.payload, provider: 'evil\r\nBcc: x@y.z' } },
      requestedBy: { name: 'agent:alice', role: 'agent' },
      userHandle: 'alice',
      expiresAt: row.expiresAt,
      approveUrl: 'http://localhost:4000/approvals/abc',
      needsCode: false,
    });
    expect(mail.subject).not.toMatch(/[\r\n]/);
    expect(mail.text).toContain('http://localhost:4000/approvals/abc');
    expect(mail.html).toContain('http://localhost:4000/approvals/abc');
  });
});
