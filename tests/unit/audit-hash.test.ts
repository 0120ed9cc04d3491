import { describe, expect, it } from 'vitest';
import { canonicalJson, hashAuditEntry, type AuditHashFields } from '../../src/engine/audit.js';

const entry: AuditHashFields = {
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

  it('refuses what has no JSON form', () => {
    expect(() => canonicalJson({ big: 1n })).toThrow(TypeError);
    expect(() => canonicalJson(undefined)).toThrow(TypeError);
  });
});

describe('hashAuditEntry', () => {
  it('does not depend on the key order of data', () => {
    const reordered = { ...entry, data: { nested: { a: [3, { x: 1, y: 2 }], b: 1 }, reason: 'not today' } };
    expect(hashAuditEntry(reordered)).toBe(hashAuditEntry(entry));
    expect(hashAuditEntry(entry)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('changes when any covered field changes', () => {
    const base = hashAuditEntry(entry);
    const variants: Array<Partial<AuditHashFields>> = [
      { id: 8n },
      { spaceId: null },
      { actionId: '0d6f2c1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f' },
      { event: 'action.approved' },
      { actor: 'system' },
      { ip: null },
      { userAgent: 'curl/8.6' },
      { data: { reason: 'not today!', nested: { b: 1, a: [3, { y: 2, x: 1 }] } } },
      { createdAt: new Date('2026-11-21T23:05:17.124Z') },
      { prevHash: '' },
    ];
    const hashes = variants.map((change) => hashAuditEntry({ ...entry, ...change }));
    for (const hash of hashes) expect(hash).not.toBe(base);
    expect(new Set(hashes).size).toBe(variants.length);
  });

  it('tells null from an empty string', () => {
    expect(hashAuditEntry({ ...entry, ip: '' })).not.toBe(hashAuditEntry({ ...entry, ip: null }));
  });
});

describe('canonicalJson on a structure that contains itself', () => {
  it('refuses it with a clear TypeError rather than overflowing the stack', async () => {
    const { canonicalJson } = await import('../../src/engine/canonical-json.js');
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = loop;
    expect(() => canonicalJson(loop)).toThrow(/circular structure/);
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
  });
});
