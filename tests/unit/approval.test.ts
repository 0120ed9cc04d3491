import { createHash } from 'node:crypto';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';

const spies = vi.hoisted(() => ({ timingSafeEqual: vi.fn(), randomBytes: vi.fn(), randomInt: vi.fn() }));

// Wrap the real functions so the tests can see which primitives the code relies on.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  spies.timingSafeEqual.mockImplementation(actual.timingSafeEqual);
  spies.randomBytes.mockImplementation(actual.randomBytes as (size: number) => Buffer);
  spies.randomInt.mockImplementation(actual.randomInt as (min: number, max: number) => number);
  return { ...actual, default: actual, ...spies };
});

const {
  MAX_CODE_ATTEMPTS,
  canonicalJson,
  hashApprovalToken,
  hashOneTimeCode,
  isWellFormedToken,
  newApprovalToken,
  newOneTimeCode,
  payloadHash,
  tokenState,
  verifyCode,
} = await import('../../src/engine/approval-tokens.js');
const { describeAction, escapeHtml, renderApprovalEmail, renderOneTimeCodeEmail, safeSubject } = await import(
  '../../src/mail/approval-email.js'
);
const { ActionTypeRegistry, BUILT_IN_ACTION_TYPES, defineActionType } = await import('../../src/engine/action-types.js');
const { APPROVAL_PAGE_HEADERS, parseDecisionForm, renderConfirmationPage, renderErrorPage, renderResultPage } = await import(
  '../../src/http/approval-pages.js'
);

beforeEach(() => {
  spies.timingSafeEqual.mockClear();
  spies.randomBytes.mockClear();
  spies.randomInt.mockClear();
});

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe('approval tokens', () => {
  it('are 32 random bytes as 43 base64url characters, hashed with SHA-256', () => {
    const { token, tokenHash } = newApprovalToken();
    expect(spies.randomBytes).toHaveBeenCalledWith(32);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token, 'base64url')).toHaveLength(32);
    expect(tokenHash).toBe(sha256(token));
    expect(hashApprovalToken(token)).toBe(tokenHash);
    expect(tokenHash).not.toContain(token);
  });

  it('do not repeat and look random', () => {
    const tokens = Array.from({ length: 500 }, () => newApprovalToken().token);
    expect(new Set(tokens).size).toBe(500);
    // Over 500 × 32 bytes, each of 256 byte values should turn up; a weak source would not spread so.
    const bytes = Buffer.concat(tokens.map((t) => Buffer.from(t, 'base64url')));
    expect(new Set(bytes).size).toBe(256);
  });

  it('are recognised as well formed, and nothing else is', () => {
    const { token } = newApprovalToken();
    expect(isWellFormedToken(token)).toBe(true);
    expect(isWellFormedToken(token.slice(0, 42))).toBe(false);
    expect(isWellFormedToken(`${token}A`)).toBe(false);
    expect(isWellFormedToken(`${token.slice(0, 42)}=`)).toBe(false);
    expect(isWellFormedToken(`${token.slice(0, 20)}+${token.slice(21)}`)).toBe(false);
    expect(isWellFormedToken(`${token.slice(0, 20)}/${token.slice(21)}`)).toBe(false);
    expect(isWellFormedToken(`${token.slice(0, 20)}%${token.slice(21)}`)).toBe(false);
    expect(isWellFormedToken('')).toBe(false);
    expect(isWellFormedToken("' OR 1=1 --")).toBe(false);
    // The last character carries 2 padding bits: "B" (…000001) cannot end a 32-byte token.
    expect(isWellFormedToken(`${'A'.repeat(42)}A`)).toBe(true);
    expect(isWellFormedToken(`${'A'.repeat(42)}B`)).toBe(false);
  });
});

describe('tokenState', () => {
  const now = new Date('2025-03-03T12:00:00Z');
  const row = { usedAt: null, voidedAt: null, expiresAt: new Date('2025-03-04T12:00:00Z'), payloadHash: 'h1' };

  it('is valid for an unused, live token bound to the current payload', () => {
    expect(tokenState(row, 'h1', now)).toBe('valid');
  });
  it('is unknown without a row', () => {
    expect(tokenState(null, 'h1', now)).toBe('unknown');
  });
  it('is used once used, even if also expired or voided', () => {
    expect(tokenState({ ...row, usedAt: now }, 'h1', now)).toBe('used');
    expect(tokenState({ ...row, usedAt: now, voidedAt: now }, 'h2', new Date('2030-01-01'))).toBe('used');
  });
  it('is voided once voided', () => {
    expect(tokenState({ ...row, voidedAt: now }, 'h1', now)).toBe('voided');
  });
  it('is payload_changed when the action payload no longer matches', () => {
    expect(tokenState(row, 'h2', now)).toBe('payload_changed');
  });
  it('is expired from expiresAt on', () => {
    expect(tokenState(row, 'h1', new Date(row.expiresAt.getTime() - 1))).toBe('valid');
    expect(tokenState(row, 'h1', row.expiresAt)).toBe('expired');
    expect(tokenState(row, 'h1', new Date('2026-01-01'))).toBe('expired');
  });
});

describe('one-time codes', () => {
  it('are 8 digits from randomInt, hashed with a domain prefix', () => {
    const { code, codeHash } = newOneTimeCode();
    expect(spies.randomInt).toHaveBeenCalledWith(0, 100_000_000);
    expect(code).toMatch(/^\d{8}$/);
    expect(codeHash).toMatch(/^[0-9a-f]{64}$/);
    expect(codeHash).not.toBe(sha256(code));
    expect(hashOneTimeCode(code)).toBe(codeHash);
    expect(MAX_CODE_ATTEMPTS).toBe(5);
  });

  it('keep leading zeros', () => {
    spies.randomInt.mockReturnValueOnce(42);
    expect(newOneTimeCode().code).toBe('00000042');
  });

  it('verify the right code, with or without spaces and dashes, and refuse wrong ones', () => {
    const { code, codeHash } = newOneTimeCode();
    expect(verifyCode(code, codeHash)).toBe(true);
    expect(verifyCode(`${code.slice(0, 4)} ${code.slice(4)}`, codeHash)).toBe(true);
    expect(verifyCode(`${code.slice(0, 4)}-${code.slice(4)}`, codeHash)).toBe(true);
    const wrong = ((Number(code) + 1) % 100_000_000).toString().padStart(8, '0');
    expect(verifyCode(wrong, codeHash)).toBe(false);
    expect(verifyCode(code.slice(0, 7), codeHash)).toBe(false);
    expect(verifyCode(`${code}0`, codeHash)).toBe(false);
    expect(verifyCode('', codeHash)).toBe(false);
    expect(verifyCode(code, 'not-a-hash')).toBe(false);
    expect(verifyCode(code, '')).toBe(false);
  });

  it('compare with timingSafeEqual on every path, well formed or not', () => {
    const { code, codeHash } = newOneTimeCode();
    for (const attempt of [code, '00000000', '1', 'x'.repeat(500), '']) {
      spies.timingSafeEqual.mockClear();
      verifyCode(attempt, codeHash);
      expect(spies.timingSafeEqual).toHaveBeenCalledTimes(1);
      const [a, b] = spies.timingSafeEqual.mock.calls[0] as [Buffer, Buffer];
      expect(a).toHaveLength(32);
      expect(b).toHaveLength(32);
    }
  });
});

describe('payloadHash', () => {
  it('does not depend on key order, at any depth', () => {
    const a = { to: ['a@x'], subject: 'Hi', meta: { z: 1, a: [{ y: 2, b: 3 }] } };
    const b = { meta: { a: [{ b: 3, y: 2 }], z: 1 }, subject: 'Hi', to: ['a@x'] };
    expect(payloadHash(a)).toBe(payloadHash(b));
    expect(canonicalJson(b)).toBe('{"meta":{"a":[{"b":3,"y":2}],"z":1},"subject":"Hi","to":["a@x"]}');
    expect(payloadHash(a)).toBe(sha256(canonicalJson(a)));
  });

  it('changes when a value, or array order, changes', () => {
    expect(payloadHash({ amount: 10 })).not.toBe(payloadHash({ amount: 100 }));
    expect(payloadHash({ to: ['a', 'b'] })).not.toBe(payloadHash({ to: ['b', 'a'] }));
    expect(payloadHash({ a: '1' })).not.toBe(payloadHash({ a: 1 }));
  });

  it('follows JSON semantics for undefined and dates', () => {
    expect(canonicalJson({ a: undefined, b: [undefined], c: new Date(0) })).toBe('{"b":[null],"c":"1970-01-01T00:00:00.000Z"}');
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
  });
});

const summary = (type: string, payload: unknown) => ({
  action: {
    id: '7c9e6679-7425-40de-944b-e07fc1f90ae7',
    type,
    payload,
    priority: 5,
    scheduledFor: null,
    createdAt: new Date('2025-03-03T12:00:00Z'),
  },
  requestedBy: { name: 'assistant', role: 'agent' },
  userHandle: 'alice',
  expiresAt: new Date('2025-03-04T12:00:00Z'),
});

const TOKEN = 'Mgd4YtMezplGa5-7VipxO4YHdG5rJdj9OWaYm7Mjt9o';
const URL_ = `https://ae.example/approvals/${TOKEN}`;

describe('describeAction', () => {
  it('says in plain words what each built-in type will do', () => {
    expect(describeAction('send_email', { to: ['a@x.example', 'b@y.example'], subject: 'Lunch', body: 'Noon?' }).headline).toBe(
      'Send an email to a@x.example, b@y.example with the subject “Lunch”',
    );
    expect(
      describeAction('create_calendar_event', {
        title: 'Standup',
        start_time: '2025-03-03T09:00:00Z',
        end_time: '2025-03-03T09:15:00Z',
        attendees: ['bob@x.example'],
      }).headline,
    ).toMatch(/^Create the calendar event “Standup” on .*3 Mar 2025.*09:00.*09:15.* with bob@x\.example$/);
    expect(describeAction('move_file', { from: 'in/a.pdf', to: 'done/a.pdf' }).headline).toBe('Move the file in/a.pdf → done/a.pdf');
    expect(describeAction('create_document', { title: 'Notes', content: 'x', folder: 'work', format: 'markdown' }).headline).toBe(
      'Create the document “Notes” in the folder work as markdown',
    );
    expect(describeAction('make_payment', { amount: 12.5, currency: 'EUR', recipient: 'Bob' }).headline).toBe('Pay 12.5 EUR to Bob');
    expect(
      describeAction('make_purchase', { items: [{ name: 'Lamp', quantity: 2, price: 20 }], merchant: 'Shop', total: 40, currency: 'GBP' })
        .headline,
    ).toBe('Buy 2 × Lamp from Shop for 40 GBP');
    const order = describeAction('order', {
      provider: 'Luigi',
      items: [{ name: 'Pizza', price: 9.5, quantity: 2, modifications: ['no olives'] }],
      pickup_time: '2025-03-03T18:30:00Z',
    });
    expect(order.headline).toMatch(/^Order from Luigi: 2 × Pizza, pickup .*18:30/);
    expect(order.details).toContainEqual({ label: 'Items', value: ['2 × Pizza at 9.50 each (no olives)'] });
    expect(order.details).toContainEqual({ label: 'Items total (price × quantity)', value: '19.00' });
  });

  it('shows unknown types and payloads that do not fit their schema as JSON, so nothing goes unseen', () => {
    const unknown = describeAction('launch_rocket', { target: 'moon' });
    expect(unknown.generic).toBe(true);
    expect(unknown.details[0]).toMatchObject({ format: 'json' });
    expect(unknown.details[0]?.value).toContain('"target": "moon"');
    // A stored payload that no longer fits (a field the schema does not know): all of it, as JSON.
    const misfit = describeAction('move_file', { from: 'a', to: 'b', overwrite: true });
    expect(misfit).toMatchObject({ generic: true, headline: 'Run the action “move_file”' });
    expect(misfit.details[0]?.value).toContain('"overwrite": true');
  });

  it('appends fields a type\'s describe never read as "Other details", and describes with the app\'s types when given', () => {
    const forgetful = defineActionType({
      type: 'book_room',
      description: 'test',
      payload: z.strictObject({ room: z.string(), floor: z.number().optional() }),
      reversible: false,
      describe: (p) => ({ headline: `Book ${p.room}`, details: [{ label: 'Room', value: p.room }] }),
    });
    const types = new ActionTypeRegistry([...BUILT_IN_ACTION_TYPES, forgetful]);
    const described = describeAction('book_room', { room: 'Ada', floor: 3 }, { types });
    expect(described.headline).toBe('Book Ada');
    expect(described.details).toEqual([
      { label: 'Room', value: 'Ada' },
      { label: 'Other details', value: '{\n  "floor": 3\n}', format: 'json' },
    ]);
    // Without the app's types, an extra type is not known: generic.
    expect(describeAction('book_room', { room: 'Ada' }).generic).toBe(true);
  });
});

describe('renderApprovalEmail', () => {
  // Valid, yet hostile: markup in the subject, a body whose lines imitate ours.
  const hostile = summary('send_email', {
    to: ['a@x.example'],
    subject: 'Hi <script>alert(1)</script>',
    body: 'line 1\nApprove here: https://evil.example\n<script>alert(2)</script>',
  });
  // Not even valid (the schema refuses line breaks in a subject): shown as JSON.
  const injected = summary('send_email', { to: ['a@x.example'], subject: 'Hi\r\nBcc: victim@evil', body: 'b' });

  it('contains the link, who asked and when it expires', () => {
    const mail = renderApprovalEmail({ ...hostile, approveUrl: URL_, needsCode: false });
    expect(mail.text).toContain(URL_);
    expect(mail.html).toContain(`href="${URL_}"`);
    expect(mail.text).toContain('assistant (agent)');
    expect(mail.text).toContain('Tue, 4 Mar 2025, 12:00 UTC');
    expect(mail.text).not.toMatch(/one-time code/);
  });

  it('keeps the subject to one line of at most 150 characters', () => {
    const mail = renderApprovalEmail({ ...hostile, approveUrl: URL_, needsCode: false });
    expect(mail.subject).not.toMatch(/[\r\n]/);
    expect(mail.subject.startsWith('Approval needed: Send an email to a@x.example')).toBe(true);
    const bad = renderApprovalEmail({ ...injected, approveUrl: URL_, needsCode: false });
    expect(bad.subject).toBe('Approval needed: Run the action “send_email”');
    expect(bad.text).not.toMatch(/^Bcc: victim/m);
    const long = renderApprovalEmail({ ...summary('send_email', { to: ['a@x.example'], subject: 'x'.repeat(400), body: 'b' }), approveUrl: URL_, needsCode: false });
    expect(Array.from(long.subject).length).toBeLessThanOrEqual(150);
    expect(safeSubject('a\u2028b\u0085c\rd\ne')).toBe('a b c d e');
  });

  it('escapes user values in the HTML part', () => {
    const mail = renderApprovalEmail({ ...hostile, approveUrl: URL_, needsCode: false });
    expect(mail.html).not.toContain('<script>');
    expect(mail.html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(mail.html).toContain('&lt;script&gt;alert(2)&lt;/script&gt;');
  });

  it('keeps multi-line values indented in the text part, so they cannot fake lines of their own', () => {
    const mail = renderApprovalEmail({ ...hostile, approveUrl: URL_, needsCode: false });
    expect(mail.text).toContain('\n    Approve here: https://evil.example');
    expect(mail.text).not.toMatch(/^Approve here/m);
    expect(mail.text).not.toMatch(/^Bcc: victim/m);
  });

  it('escapes a payload of an unknown type', () => {
    const mail = renderApprovalEmail({ ...summary('custom', { x: '<script>alert(3)</script>' }), approveUrl: URL_, needsCode: false });
    expect(mail.html).not.toContain('<script>');
    expect(mail.html).toContain('&lt;script&gt;alert(3)&lt;/script&gt;');
  });

  it('announces the separate one-time code when one is needed', () => {
    const mail = renderApprovalEmail({ ...summary('make_payment', { amount: 5, currency: 'EUR', recipient: 'Bob' }), approveUrl: URL_, needsCode: true });
    expect(mail.text).toMatch(/one-time code that arrives in a separate email/);
    expect(mail.html).toMatch(/one-time code that arrives in a separate email/);
  });

  it('refuses a link that is not http(s)', () => {
    expect(() => renderApprovalEmail({ ...hostile, approveUrl: 'javascript:alert(1)', needsCode: false })).toThrow(TypeError);
  });
});

describe('renderOneTimeCodeEmail', () => {
  it('carries the code in the body only', () => {
    const mail = renderOneTimeCodeEmail({ actionSummary: 'Pay 5 EUR to <Bob>\r\nX: y', code: '01234567', expiresAt: new Date('2025-03-04T12:00:00Z') });
    expect(mail.subject).not.toMatch(/[\r\n]/);
    expect(mail.subject).not.toContain('0123');
    expect(mail.text).toContain('0123 4567');
    expect(mail.html).toContain('0123 4567');
    expect(mail.html).toContain('&lt;Bob&gt;');
    expect(mail.html).not.toContain('<Bob>');
  });
});

describe('escapeHtml', () => {
  it('escapes the five HTML-significant characters', () => {
    expect(escapeHtml(`<a href="x" onclick='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  });
});

function forms(html: string): string[] {
  return html.match(/<form\b[\s\S]*?<\/form>/g) ?? [];
}

describe('renderConfirmationPage', () => {
  const hostile = {
    ...summary('order', {
      provider: '"><script>alert(1)</script>',
      items: [{ name: '<img src=x onerror=alert(2)>', price: 1, quantity: 1 }],
    }),
    requestedBy: { name: '</title><script>alert(3)</script>', role: 'agent' },
    userHandle: "alice' onmouseover='x",
  };

  it('escapes hostile values and contains no script', () => {
    const html = renderConfirmationPage({ ...hostile, token: TOKEN, needsCode: false });
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toContain('<img');
    expect(html).not.toContain("alice' onmouseover");
    expect(html).toContain('&lt;img src=x onerror=alert(2)&gt;');
    expect(html).toContain('&quot;&gt;&lt;script&gt;');
    expect(html).toContain('name="viewport"');
  });

  it('has an approve and a reject form, both posting to the token URL', () => {
    const html = renderConfirmationPage({ ...hostile, token: TOKEN, needsCode: false });
    const [approve, reject, ...others] = forms(html);
    expect(others).toHaveLength(0);
    for (const form of [approve, reject]) {
      expect(form).toMatch(/method="post"/);
      expect(form).toContain(`action="/approvals/${TOKEN}"`);
      expect(form).toContain('enctype="application/x-www-form-urlencoded"');
    }
    expect(approve).toContain('<input type="hidden" name="decision" value="approve">');
    expect(reject).toContain('<input type="hidden" name="decision" value="reject">');
    expect(reject).toMatch(/<textarea[^>]*name="reason"[^>]*maxlength="1000"/);
    expect(approve).not.toContain('name="code"');
    expect(html).not.toContain('name="code"');
  });

  it('asks for the one-time code on the approve form only when needed', () => {
    const html = renderConfirmationPage({ ...summary('make_payment', { amount: 5, currency: 'EUR', recipient: 'Bob' }), token: TOKEN, needsCode: true });
    const [approve, reject] = forms(html);
    expect(approve).toMatch(/<input[^>]*name="code"[^>]*required/);
    expect(reject).not.toContain('name="code"');
  });

  it('after a wrong or missing code, says so inside the approve form with the tries left, and shows nothing of the kind otherwise', () => {
    const input = { ...summary('make_payment', { amount: 5, currency: 'EUR', recipient: 'Bob' }), token: TOKEN, needsCode: true };
    expect(renderConfirmationPage(input)).not.toContain('role="alert"');
    const [wrong] = forms(renderConfirmationPage({ ...input, codeError: { attemptsLeft: 1, missing: false } }));
    expect(wrong).toMatch(/role="alert">That code is not right, so nothing was approved\. 1 try is left before this link is locked\./);
    expect(wrong).toMatch(/<input[^>]*name="code"/);
    const [missing] = forms(renderConfirmationPage({ ...input, codeError: { attemptsLeft: 3, missing: true } }));
    expect(missing).toMatch(/Enter the 8\u2011digit code from the second email to approve\. Nothing was approved\. 3 tries are left/);
  });

  it('comes with strict headers', () => {
    expect(APPROVAL_PAGE_HEADERS['Content-Security-Policy']).toBe(
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    expect(APPROVAL_PAGE_HEADERS['Referrer-Policy']).toBe('no-referrer');
    expect(APPROVAL_PAGE_HEADERS['Cache-Control']).toBe('no-store');
    expect(APPROVAL_PAGE_HEADERS['X-Content-Type-Options']).toBe('nosniff');
  });
});

describe('parseDecisionForm', () => {
  it('reads an approval, a rejection with reason, and a code', () => {
    expect(parseDecisionForm('decision=approve')).toEqual({ decision: 'approve', reason: null, code: null });
    expect(parseDecisionForm('decision=reject&reason=Too+expensive%21')).toEqual({ decision: 'reject', reason: 'Too expensive!', code: null });
    expect(parseDecisionForm('decision=reject&reason=++')).toEqual({ decision: 'reject', reason: null, code: null });
    expect(parseDecisionForm('decision=approve&code=1234+5678')).toEqual({ decision: 'approve', reason: null, code: '12345678' });
    expect(parseDecisionForm('decision=approve&code=')).toEqual({ decision: 'approve', reason: null, code: null });
  });

  it('refuses a missing or unknown decision, naming the field', () => {
    expect(parseDecisionForm('')).toEqual({ error: expect.stringContaining('"decision"') });
    expect(parseDecisionForm('decision=yes')).toEqual({ error: expect.stringContaining('"decision"') });
    expect(parseDecisionForm('decision=APPROVE')).toEqual({ error: expect.stringContaining('"decision"') });
  });

  it('refuses repeated and unexpected fields', () => {
    expect(parseDecisionForm('decision=approve&decision=reject')).toEqual({ error: expect.stringContaining('more than once') });
    expect(parseDecisionForm('decision=approve&admin=1')).toEqual({ error: expect.stringContaining('"admin"') });
  });

  it('caps the reason at 1000 characters and checks the code', () => {
    expect(parseDecisionForm(`decision=reject&reason=${'a'.repeat(1000)}`)).toMatchObject({ reason: 'a'.repeat(1000) });
    expect(parseDecisionForm(`decision=reject&reason=${'a'.repeat(1001)}`)).toEqual({ error: expect.stringContaining('"reason"') });
    expect(parseDecisionForm(`decision=reject&reason=${encodeURIComponent('é'.repeat(1000))}`)).toMatchObject({ decision: 'reject' });
    expect(parseDecisionForm('decision=approve&code=1234')).toEqual({ error: expect.stringContaining('"code"') });
    expect(parseDecisionForm(`decision=approve&reason=${'a'.repeat(20_000)}`)).toEqual({ error: expect.stringContaining('too large') });
  });
});

describe('result and error pages', () => {
  it('map each state to its HTTP status', () => {
    const expected = {
      unknown: 404,
      used: 409,
      already_decided: 409,
      expired: 410,
      voided: 410,
      payload_changed: 410,
      wrong_code: 403,
      too_many_attempts: 429,
      bad_request: 400,
    } as const;
    for (const [state, status] of Object.entries(expected)) {
      const page = renderErrorPage(state as keyof typeof expected);
      expect(page.status, state).toBe(status);
      expect(page.html).toMatch(/<h1>[^<]+<\/h1>/);
    }
  });

  it('escape the detail and the result message', () => {
    expect(renderErrorPage('bad_request', '<script>x</script>').html).toContain('&lt;script&gt;x&lt;/script&gt;');
    const html = renderResultPage({ title: 'Approved <b>', message: 'It <i>runs</i> now', status: 'approved' });
    expect(html).toContain('Approved &lt;b&gt;');
    expect(html).not.toMatch(/<script|<i>|<b>/);
  });
});
