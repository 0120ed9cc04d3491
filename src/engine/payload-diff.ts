import diff from 'microdiff';

/**
 * What an approver's edit changed, for the audit (`action.revised`) and the status stream:
 * microdiff's changes as `{ path, from, to }` (`from` absent when added, `to` absent when removed).
 */
export interface PayloadChange {
  path: string;
  from?: unknown;
  to?: unknown;
}

export function payloadDiff(before: unknown, after: unknown): PayloadChange[] {
  const a = isObject(before) ? before : {};
  const b = isObject(after) ? after : {};
  return diff(a, b).map((d) => {
    const path = d.path.map(String).join('.');
    if (d.type === 'CREATE') return { path, to: d.value };
    if (d.type === 'REMOVE') return { path, from: d.oldValue };
    return { path, from: d.oldValue, to: d.value };
  });
}

/** "subject: "Hi" → "Hello"; cc added" — the first few changes in words. */
export function describeDiff(changes: readonly PayloadChange[]): string {
  if (changes.length === 0) return 'no change';
  const shown = changes.slice(0, 3).map((c) => {
    if (!('from' in c)) return `${c.path} added (${short(c.to)})`;
    if (!('to' in c)) return `${c.path} removed`;
    return `${c.path}: ${short(c.from)} → ${short(c.to)}`;
  });
  const more = changes.length > 3 ? `; and ${changes.length - 3} more change${changes.length === 4 ? '' : 's'}` : '';
  return `${shown.join('; ')}${more}`;
}

function short(value: unknown): string {
  const text = JSON.stringify(value) ?? 'null';
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
