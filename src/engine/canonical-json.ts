/**
 * JSON with object keys sorted (by UTF-16 code unit, recursively), no whitespace, and JSON's
 * own rules otherwise (`toJSON` is honoured, `undefined`/functions/symbols are dropped from
 * objects and become `null` in arrays, non-finite numbers become `null`). Equal values give
 * equal strings whatever their key order, including after a round trip through `jsonb`.
 *
 * @throws TypeError for a BigInt, a circular structure, or when the value itself has no JSON form (e.g. `undefined`).
 */
export function canonicalJson(value: unknown): string {
  const out = encode(value, '', new Set());
  if (out === undefined) throw new TypeError(`canonicalJson: a ${typeof value} has no JSON form`);
  return out;
}

function encode(value: unknown, key: string, ancestors: Set<object>): string | undefined {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON(key: string): unknown }).toJSON(key);
  }
  if (value instanceof Number || value instanceof String || value instanceof Boolean) value = value.valueOf();
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      throw new TypeError('canonicalJson: BigInt has no JSON form');
    case 'object': {
      if (value === null) return 'null';
      if (ancestors.has(value)) throw new TypeError('canonicalJson: circular structure');
      ancestors.add(value);
      try {
        if (Array.isArray(value)) return `[${value.map((item, i) => encode(item, String(i), ancestors) ?? 'null').join(',')}]`;
        const obj = value as Record<string, unknown>;
        const parts: string[] = [];
        for (const k of Object.keys(obj).sort()) {
          const v = encode(obj[k], k, ancestors);
          if (v !== undefined) parts.push(`${JSON.stringify(k)}:${v}`);
        }
        return `{${parts.join(',')}}`;
      } finally {
        ancestors.delete(value);
      }
    }
    default:
      return undefined;
  }
}
