import { useState } from 'preact/hooks';

/**
 * A form generated from an action type's payload JSON Schema (as `actionTypes.payloadSchema`
 * gives it): text, number and yes/no fields for scalars, one item per line for lists of
 * scalars, JSON for anything nested. Starts from the current payload; returns the whole edited
 * payload (approveAction takes the whole payload, not a patch).
 */

interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  enum?: unknown[];
  description?: string;
  title?: string;
  format?: string;
  anyOf?: Schema[];
}

type Kind = 'string' | 'text' | 'number' | 'integer' | 'boolean' | 'enum' | 'list' | 'json';

function baseType(s: Schema): string | undefined {
  if (Array.isArray(s.type)) return s.type.find((t) => t !== 'null');
  if (s.type) return s.type;
  const nonNull = s.anyOf?.filter((x) => x.type !== 'null');
  return nonNull?.length === 1 ? baseType(nonNull[0]!) : undefined;
}

function kindOf(name: string, s: Schema): Kind {
  if (s.enum) return 'enum';
  const t = baseType(s);
  if (t === 'string') return /body|content|description|instructions|html|memo/i.test(name) ? 'text' : 'string';
  if (t === 'number' || t === 'integer' || t === 'boolean') return t;
  if (t === 'array' && s.items && ['string', 'number', 'integer'].includes(baseType(s.items) ?? '')) return 'list';
  return 'json';
}

function toText(kind: Kind, value: unknown): string {
  if (value === undefined || value === null) return '';
  if (kind === 'list') return Array.isArray(value) ? value.join('\n') : '';
  if (kind === 'json') return JSON.stringify(value, null, 2);
  return String(value);
}

export function SchemaForm(props: {
  idPrefix: string;
  schema: unknown;
  payload: Record<string, unknown>;
  submitLabel: string;
  busy: boolean;
  onSubmit: (payload: Record<string, unknown>, comment: string) => void;
  onCancel: () => void;
}) {
  const schema = (props.schema ?? {}) as Schema;
  const props_ = schema.properties ?? {};
  const names = Array.from(new Set([...Object.keys(props_), ...Object.keys(props.payload)]));
  const [values, setValues] = useState<Record<string, string | boolean>>(() =>
    Object.fromEntries(
      names.map((n) => {
        const k = kindOf(n, props_[n] ?? {});
        return [n, k === 'boolean' ? props.payload[n] === true : toText(k, props.payload[n])];
      }),
    ),
  );
  const [comment, setComment] = useState('');
  const [error, setError] = useState<string | null>(null);

  function submit(e: Event) {
    e.preventDefault();
    const out: Record<string, unknown> = {};
    for (const n of names) {
      const s = props_[n] ?? {};
      const k = kindOf(n, s);
      const v = values[n];
      if (k === 'boolean') {
        out[n] = v === true;
        continue;
      }
      const text = String(v ?? '');
      if (text.trim() === '') continue; // left empty: not sent (the type's schema says whether that is allowed)
      if (k === 'number' || k === 'integer') {
        const num = Number(text);
        if (!Number.isFinite(num)) return setError(`${n}: "${text}" is not a number.`);
        out[n] = num;
      } else if (k === 'list') {
        const items = text.split('\n').map((x) => x.trim()).filter(Boolean);
        const it = baseType(s.items ?? {});
        out[n] = it === 'number' || it === 'integer' ? items.map(Number) : items;
      } else if (k === 'json') {
        try {
          out[n] = JSON.parse(text);
        } catch {
          return setError(`${n}: not valid JSON.`);
        }
      } else out[n] = text;
    }
    setError(null);
    props.onSubmit(out, comment);
  }

  return (
    <form class="edit-form" onSubmit={submit}>
      {names.map((n) => {
        const s = props_[n] ?? {};
        const k = kindOf(n, s);
        const id = `${props.idPrefix}-${n}`;
        const hint = s.description ? `${id}-hint` : undefined;
        const required = schema.required?.includes(n) ?? false;
        const set = (v: string | boolean) => setValues({ ...values, [n]: v });
        const common = { id, name: n, 'aria-describedby': hint, required: required && k !== 'boolean' };
        return (
          <div class={`field ${k === 'boolean' ? 'check' : ''}`}>
            <label for={id}>
              {s.title ?? n}
              {required ? ' (required)' : ''}
            </label>
            {k === 'boolean' ? (
              <input type="checkbox" {...common} checked={values[n] === true} onChange={(e) => set(e.currentTarget.checked)} />
            ) : k === 'enum' ? (
              <select {...common} value={String(values[n])} onChange={(e) => set(e.currentTarget.value)}>
                {!required && <option value="">—</option>}
                {s.enum!.map((o) => (
                  <option value={String(o)}>{String(o)}</option>
                ))}
              </select>
            ) : k === 'text' || k === 'list' || k === 'json' ? (
              <textarea {...common} rows={k === 'json' ? 6 : 4} class={k === 'json' ? 'mono' : ''} value={String(values[n])} onInput={(e) => set(e.currentTarget.value)} />
            ) : (
              <input type={k === 'string' ? 'text' : 'number'} step={k === 'number' ? 'any' : undefined} {...common} value={String(values[n])} onInput={(e) => set(e.currentTarget.value)} />
            )}
            {hint && (
              <small id={hint} class="hint">
                {s.description}
                {k === 'list' ? ' One per line.' : ''}
              </small>
            )}
          </div>
        );
      })}
      <div class="field">
        <label for={`${props.idPrefix}-comment`}>Comment</label>
        <input id={`${props.idPrefix}-comment`} type="text" value={comment} onInput={(e) => setComment(e.currentTarget.value)} />
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="buttons">
        <button type="submit" disabled={props.busy}>
          {props.submitLabel}
        </button>
        <button type="button" class="secondary" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
