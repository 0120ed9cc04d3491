import { describe, expect, it } from 'vitest';
import {
  auditContentHash,
  auditLink,
  canonicalJson,
  hashAuditEntry,
  prepareAuditEntries,
  AuditWriteError,
  type AuditContentFields,
  type AuditHashFields,
} from '../../src/engine/audit.js';
import {
  CheckpointFormatError,
  checkpointEntriesText,
  checkpointHash,
  checkpointSigningInput,
  parseCheckpointEntries,
} from '../../src/engine/audit-checkpoints.js';

const legacy: AuditHashFields = {
  id: 7n,
  spaceId: '0d6f2c1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f',
  actionId: null,
  event: 'action.rejected',
  actor: 'b9a3c1f0-1111-4222-8333-444455556666',
  ip: '203.0.113.9',
  userAgent: 'curl/8.5',
  data: { reason: 'not today', nested: { b: 1, a: [3, { y: 2, x: 1 }] } },
  createdAt: new Date('2026-11-21T23:05:17.123Z'),
  prevHash: 'a'.repeat(64),
};

const content: AuditContentFields = {
  chain: '5f0c2a9e-3b1d-4e6f-8a7b-9c0d1e2f3a4b',
  spaceId: '0d6f2c1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f',
  actionId: '5f0c2a9e-3b1d-4e6f-8a7b-9c0d1e2f3a4b',
  event: 'action.approved',
  actor: 'b9a3c1f0-1111-4222-8333-444455556666',
  ip: '203.0.113.9',
  userAgent: 'curl/8.5',
  data: { comment: 'ok', nested: { b: 1, a: [3, { y: 2, x: 1 }] } },
  createdAt: new Date('2026-11-27T09:40:00.001Z'),
};

describe('canonicalJson', () => {
  it('is key-order independent at every depth, and keeps array order', () => {
    const a = { b: 1, a: { d: [1, { z: true, y: null }], c: 'x' } };
    const b = { a: { c: 'x', d: [1, { y: null, z: true }] }, b: 1 };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson(a)).toBe('{"a":{"c":"x","d":[1,{"y":null,"z":true}]},"b":1}');
    expect(canonicalJson([2, 1])).not.toBe(canonicalJson([1, 2]));
  });

  it('follows JSON rules, so a value hashes the same before and after a round trip through jsonb', () => {
    const value = { when: new Date('2026-01-02T03:04:05.006Z'), gone: undefined, list: [undefined, Number.NaN], n: 1.5e21 };
    expect(canonicalJson(value)).toBe('{"list":[null,null],"n":1.5e+21,"when":"2026-01-02T03:04:05.006Z"}');
    expect(canonicalJson(JSON.parse(JSON.stringify(value)))).toBe(canonicalJson(value));
  });

  it('refuses what has no JSON form, and a structure that contains itself', () => {
    expect(() => canonicalJson({ big: 1n })).toThrow(TypeError);
    expect(() => canonicalJson(undefined)).toThrow(TypeError);
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = loop;
    expect(() => canonicalJson(loop)).toThrow(/circular structure/);
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
  });
});

describe('format 1 (legacy chain): hashAuditEntry', () => {
  it('does not depend on the key order of data, and changes with every covered field', () => {
    expect(hashAuditEntry({ ...legacy, data: { nested: { a: [3, { x: 1, y: 2 }], b: 1 }, reason: 'not today' } })).toBe(hashAuditEntry(legacy));
    const variants: Array<Partial<AuditHashFields>> = [
      { id: 8n },
      { spaceId: null },
      { actionId: '0d6f2c1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f' },
      { event: 'action.approved' },
      { actor: 'system' },
      { ip: null },
      { ip: '' },
      { userAgent: 'curl/8.6' },
      { data: { reason: 'not today!' } },
      { createdAt: new Date('2026-11-21T23:05:17.124Z') },
      { prevHash: '' },
    ];
    const hashes = variants.map((change) => hashAuditEntry({ ...legacy, ...change }));
    expect(new Set([hashAuditEntry(legacy), ...hashes]).size).toBe(variants.length + 1);
  });
});

describe('format 2 (per chain): auditContentHash and auditLink', () => {
  it('the content hash covers chain, ids, event, actor, ip, user agent, data and time, not key order', () => {
    expect(auditContentHash({ ...content, data: { nested: { a: [3, { x: 1, y: 2 }], b: 1 }, comment: 'ok' } })).toBe(auditContentHash(content));
    const variants: Array<Partial<AuditContentFields>> = [
      { chain: 'admin:global' },
      { spaceId: null },
      { actionId: null },
      { event: 'action.rejected' },
      { actor: 'system' },
      { ip: null },
      { ip: '' },
      { userAgent: null },
      { data: { comment: 'ok!' } },
      { createdAt: new Date('2026-11-27T09:40:00.002Z') },
    ];
    const hashes = variants.map((change) => auditContentHash({ ...content, ...change }));
    expect(new Set([auditContentHash(content), ...hashes]).size).toBe(variants.length + 1);
  });

  it('a link binds the previous hash, the place in the chain and the content (so entries cannot be swapped or renumbered)', () => {
    const c = auditContentHash(content);
    const link = auditLink('', 1, c);
    expect(link).toMatch(/^[0-9a-f]{64}$/);
    expect(auditLink('', 2, c)).not.toBe(link);
    expect(auditLink('b'.repeat(64), 1, c)).not.toBe(link);
    expect(auditLink('', 1, auditContentHash({ ...content, event: 'x' }))).not.toBe(link);
    // The place is decimal text between line feeds: "1" LF "2…" cannot collide with "12" LF "…".
    expect(auditLink('a', 12, 'c')).not.toBe(auditLink('a\n1', 2, 'c'));
  });

  it('prepareAuditEntries hashes the canonical data and refuses ids that are not UUIDs', () => {
    const at = new Date('2026-11-27T10:00:00.000Z');
    const [entry] = prepareAuditEntries(content.chain, [{ event: 'action.approved', actor: 'system', spaceId: content.spaceId!.toUpperCase(), data: { comment: 'x' } }], at);
    expect(entry!.spaceId).toBe(content.spaceId);
    expect(entry!.data).toBe('{"comment":"x"}');
    expect(entry!.contentHash).toBe(auditContentHash({ ...entry!, data: { comment: 'x' } }));
    expect(() => prepareAuditEntries('c', [{ event: 'action.approved', actor: 'system', actionId: 'act-1', data: { comment: null } }], at)).toThrow(AuditWriteError);
  });
});

describe('checkpoints', () => {
  const entries = [
    { id: 3n, hash: 'a'.repeat(64) },
    { id: 1n, hash: 'b'.repeat(64) },
  ];

  it('list "<id> <hash>" lines in sealed order and parse back', () => {
    const text = checkpointEntriesText(entries);
    expect(text).toBe(`3 ${'a'.repeat(64)}\n1 ${'b'.repeat(64)}`);
    expect(parseCheckpointEntries(text)).toEqual(entries);
    expect(parseCheckpointEntries('')).toEqual([]);
  });

  it('refuse a malformed entries text, naming the line', () => {
    for (const bad of [`3 ${'a'.repeat(63)}`, `x ${'a'.repeat(64)}`, `3  ${'a'.repeat(64)}`, `3 ${'a'.repeat(64)}\n`, `3 ${'A'.repeat(64)}`]) {
      expect(() => parseCheckpointEntries(bad), bad).toThrow(CheckpointFormatError);
    }
    expect(() => parseCheckpointEntries(`3 ${'a'.repeat(64)}\nbad`)).toThrow(/line 2/);
  });

  it('hash prevHash, the cursor and the entries: each changes it, and so does their order', () => {
    const base = { prevHash: 'c'.repeat(64), lastTxid: 900n, lastId: 1n, entries: checkpointEntriesText(entries) };
    const hash = checkpointHash(base);
    expect(checkpointHash({ ...base, lastTxid: '900', lastId: '1' })).toBe(hash);
    const variants = [
      { prevHash: '' },
      { lastTxid: 901n },
      { lastId: 2n },
      { entries: checkpointEntriesText([...entries].reverse()) },
      { entries: checkpointEntriesText(entries.slice(0, 1)) },
    ];
    expect(new Set([hash, ...variants.map((v) => checkpointHash({ ...base, ...v }))]).size).toBe(variants.length + 1);
  });

  it('what is signed starts with a fixed context line', () => {
    expect(checkpointSigningInput('d'.repeat(64))).toBe(`action-engine audit checkpoint v1\n${'d'.repeat(64)}`);
  });
});

describe('auditContentHash', () => {
  it('is SHA-256 of the canonical JSON of the whole entry, for entries with nulls, unicode and nested data (prepared entries too)', async () => {
    const { createHash } = await import('node:crypto');
    const entries: AuditContentFields[] = [
      { chain: 'admin:global', spaceId: null, actionId: null, event: 'api_key.created', actor: 'system', ip: null, userAgent: null, data: { b: 1, a: [null, 'x'] }, createdAt: new Date(0) },
      {
        chain: '11111111-1111-4111-8111-111111111111',
        spaceId: '22222222-2222-4222-8222-222222222222',
        actionId: '11111111-1111-4111-8111-111111111111',
        event: 'action.rejected',
        actor: 'email-link:33333333-3333-4333-8333-333333333333',
        ip: '2001:db8::1',
        userAgent: 'Mozilla/5.0 "quoted" \u00e9\u{1F600}',
        data: { reason: 'nein \u2028 \\ "x"', z: { y: 1, x: [2, { b: true, a: false }] } },
        createdAt: new Date('2026-11-27T10:00:00.123Z'),
      },
    ];
    for (const entry of entries) {
      const expected = createHash('sha256')
        .update(canonicalJson({ ...entry, createdAt: entry.createdAt.toISOString() }))
        .digest('hex');
      expect(auditContentHash(entry)).toBe(expected);
      const [prepared] = prepareAuditEntries(entry.chain, [{ event: 'action.rejected', actor: entry.actor, spaceId: entry.spaceId, actionId: entry.actionId, ip: entry.ip, userAgent: entry.userAgent, data: entry.data as never }], entry.createdAt);
      expect(prepared!.contentHash).toBe(auditContentHash({ ...entry, event: 'action.rejected' }));
    }
  });
});
