import { useEffect, useState, useRef } from 'preact/hooks';
import { request } from './api';
import { AdminTypesQuery, SafetyRulesQuery, TestConditionQuery, UpsertSafetyRuleMutation } from './ops';
import type { ConsoleAdminTypesQuery, ConsoleSafetyRuleFieldsFragment, SafetyRuleKind } from './generated/graphql';
import { describedBy, Field, FormErrors, useFocusHeading, knownUsers, Notices, SaveCancel, useSubmit } from './form';
import { Time } from './view';

type Rule = ConsoleSafetyRuleFieldsFragment;
type Types = ConsoleAdminTypesQuery['actionTypes'];
type User = { id: string; handle: string };

const KINDS: { kind: SafetyRuleKind; label: string }[] = [
  { kind: 'REQUIRES_APPROVAL', label: 'Requires approval' },
  { kind: 'RATE_LIMIT', label: 'Rate limit' },
  { kind: 'BLOCKED', label: 'Blocked' },
  { kind: 'REQUIRES_KYC', label: 'Requires KYC' },
];
const kindLabel = (k: string) => KINDS.find((x) => x.kind === k)?.label ?? k;

function windowText(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400} day${seconds === 86_400 ? '' : 's'}`;
  if (seconds % 3600 === 0) return `${seconds / 3600} hour${seconds === 3600 ? '' : 's'}`;
  if (seconds % 60 === 0) return `${seconds / 60} minute${seconds === 60 ? '' : 's'}`;
  return `${seconds} s`;
}

/** Admins: the rules in force (defaults and this space's own), a form to add or change one, and a live condition tester. */
export function RulesPage({ apiKey }: { apiKey: string }) {
  const [rules, setRules] = useState<Rule[] | null>(null);
  const [types, setTypes] = useState<Types>([]);
  const [users, setUsers] = useState<User[]>([]);
  const [editing, setEditing] = useState<Rule | 'new' | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = () =>
    request(apiKey, SafetyRulesQuery)
      .then((r) => setRules(r.safetyRules))
      .catch((e: Error) => setError(e.message));
  useEffect(() => {
    void load();
    request(apiKey, AdminTypesQuery)
      .then((r) => {
        setTypes(r.actionTypes);
        setUsers(knownUsers(r.apiKeys));
      })
      .catch((e: Error) => setError(e.message));
  }, [apiKey]);

  const byType = new Map<string, Rule[]>();
  for (const r of rules ?? []) byType.set(r.actionType, [...(byType.get(r.actionType) ?? []), r]);

  return (
    <>
      <section>
        <h2 id="rules-title">Safety rules</h2>
        <p class="muted">
          Rules decide, per action type, what is blocked, limited or needs a person. Defaults apply to every space; changing one here makes this space's own rule in
          its place.
        </p>
        <Notices error={error} saved={saved} />
        {editing === null && (
          <div class="buttons">
            <button
              type="button"
              onClick={() => {
                setSaved(null);
                setEditing('new');
              }}
            >
              New rule
            </button>
          </div>
        )}
      </section>
      {editing !== null && (
        <RuleEditor
          key={editing === 'new' ? 'new' : editing.id}
          apiKey={apiKey}
          rule={editing === 'new' ? null : editing}
          types={types}
          users={users}
          onCancel={() => setEditing(null)}
          onSaved={(r) => {
            setSaved(`Saved: ${r.actionType}, ${kindLabel(r.kind).toLowerCase()}${r.condition ? ` when ${r.condition}` : ''}.`);
            setEditing(null);
            void load();
          }}
        />
      )}
      <section>
        <h2 id="rules-list-title">Rules in force</h2>
        {rules === null ? (
          <p>Loading…</p>
        ) : rules.length === 0 ? (
          <p class="empty">No rules.</p>
        ) : (
          [...byType].map(([type, list]) => (
            <div class="group">
              <h3>
                <code>{type}</code>
              </h3>
              <ul class="cards">
                {list.map((r) => (
                  <RuleItem rule={r} onEdit={() => (setSaved(null), setEditing(r))} />
                ))}
              </ul>
            </div>
          ))
        )}
      </section>
    </>
  );
}

function RuleItem({ rule: r, onEdit }: { rule: Rule; onEdit: () => void }) {
  const hid = `rule-${r.id}`;
  const name = `${r.actionType}: ${kindLabel(r.kind).toLowerCase()}`;
  return (
    <li class="card compact" aria-labelledby={hid}>
      <div class="card-head">
        <h4 id={hid} class="item-title">
          {kindLabel(r.kind)}
          {r.kind === 'RATE_LIMIT' && r.limit != null && r.windowSeconds != null && ` · ${r.limit} per ${windowText(r.windowSeconds)}`}
        </h4>
        <span class="badges">
          <span class={`badge ${r.spaceId ? 'own' : ''}`}>{r.spaceId ? 'this space' : 'default'}</span>
          {!r.enabled && <span class="badge off">off</span>}
        </span>
      </div>
      <dl class="details">
        {r.condition && (
          <div>
            <dt>Only when</dt>
            <dd>
              <code>{r.condition}</code>
            </dd>
          </div>
        )}
        {r.approvalsRequired != null && r.approvalsRequired > 1 && (
          <div>
            <dt>Approvals</dt>
            <dd>{r.approvalsRequired} distinct approvers</dd>
          </div>
        )}
        {r.escalateAfterMinutes != null && (
          <div>
            <dt>Escalates</dt>
            <dd>
              after {r.escalateAfterMinutes} min to {r.escalateTo.join(', ')}
            </dd>
          </div>
        )}
        {r.graceSeconds != null && (
          <div>
            <dt>Grace period</dt>
            <dd>{r.graceSeconds} s</dd>
          </div>
        )}
        {r.description && (
          <div>
            <dt>Note</dt>
            <dd>{r.description}</dd>
          </div>
        )}
      </dl>
      <div class="card-foot">
        <p class="meta">
          Changed <Time at={r.updatedAt} />
        </p>
        <button type="button" class="secondary" aria-label={`Edit rule ${name}`} onClick={onEdit}>
          Edit
        </button>
      </div>
    </li>
  );
}

interface RuleForm {
  actionType: string;
  kind: SafetyRuleKind;
  limit: string;
  windowSeconds: string;
  condition: string;
  approvalsRequired: string;
  escalateAfterMinutes: string;
  escalateTo: string;
  graceSeconds: string;
  description: string;
  enabled: boolean;
}

const num = (v: number | null | undefined) => (v == null ? '' : String(v));

function RuleEditor(props: { apiKey: string; rule: Rule | null; types: Types; users: User[]; onSaved: (r: Rule) => void; onCancel: () => void }) {
  const heading = useFocusHeading();
  const r = props.rule;
  const [form, setForm] = useState<RuleForm>(() => ({
    actionType: r?.actionType ?? props.types[0]?.type ?? '',
    kind: r?.kind ?? 'REQUIRES_APPROVAL',
    limit: num(r?.limit),
    windowSeconds: num(r?.windowSeconds),
    condition: r?.condition ?? '',
    approvalsRequired: num(r?.approvalsRequired),
    escalateAfterMinutes: num(r?.escalateAfterMinutes),
    escalateTo: (r?.escalateTo ?? []).join('\n'),
    graceSeconds: num(r?.graceSeconds),
    description: r?.description ?? '',
    enabled: r?.enabled ?? true,
  }));
  const { fieldErrors, setFieldErrors, general, setGeneral, busy, submit } = useSubmit();
  const set = <K extends keyof RuleForm>(k: K, v: RuleForm[K]) => {
    setForm((f) => ({ ...f, [k]: v }));
    // A field's error goes once the field is changed (saving again checks it anew).
    setFieldErrors(({ [k]: _, ...rest }) => rest);
  };
  // The type list may arrive after the form opened.
  useEffect(() => {
    if (!form.actionType && props.types[0]) set('actionType', props.types[0].type);
  }, [props.types]);

  async function save(e: Event) {
    e.preventDefault();
    const local: Record<string, string> = {};
    const int = (name: keyof RuleForm, text: string): number | null => {
      if (!text.trim()) return null;
      const n = Number(text);
      if (!Number.isInteger(n)) local[name] = `“${text}” is not a whole number.`;
      return n;
    };
    const isRate = form.kind === 'RATE_LIMIT';
    const isApproval = form.kind === 'REQUIRES_APPROVAL';
    const input = {
      actionType: form.actionType,
      kind: form.kind,
      limit: isRate ? int('limit', form.limit) : null,
      windowSeconds: isRate ? int('windowSeconds', form.windowSeconds) : null,
      condition: form.condition.trim() ? form.condition : null,
      approvalsRequired: isApproval ? int('approvalsRequired', form.approvalsRequired) : null,
      escalateAfterMinutes: isApproval ? int('escalateAfterMinutes', form.escalateAfterMinutes) : null,
      escalateTo: isApproval
        ? form.escalateTo
            .split(/[\n,]/)
            .map((x) => x.trim())
            .filter(Boolean)
        : [],
      graceSeconds: int('graceSeconds', form.graceSeconds),
      description: form.description.trim() || null,
      enabled: form.enabled,
    };
    setFieldErrors(local);
    setGeneral([]);
    if (Object.keys(local).length) return;
    await submit(
      null,
      async () => (await request(props.apiKey, UpsertSafetyRuleMutation, { input })).upsertSafetyRule,
      (r) => r.rule,
      props.onSaved,
      {
        // Focus the first field at fault, so a keyboard user lands on what to fix.
        focus: (byField) => {
          const first = Object.keys(byField)[0];
          if (first) document.getElementById(`rule-${first}`)?.focus();
        },
      },
    );
  }

  const fe = fieldErrors;
  const typeInfo = props.types.find((t) => t.type === form.actionType);
  return (
    <section class="card editor">
      <h2 id="rule-editor-title" ref={heading} tabIndex={-1}>{r ? `Edit rule: ${r.actionType}, ${kindLabel(r.kind).toLowerCase()}` : 'New rule'}</h2>
      {r && !r.spaceId && <p class="muted">This is a default rule: saving makes this space's own rule in its place (other spaces keep the default).</p>}
      {r && <p class="muted small">A rule is known by its type and kind (and a rate limit by its window): for another type or kind, make a new rule.</p>}
      <form onSubmit={save} noValidate>
        <div class="grid2">
          <Field id="rule-actionType" label="Action type" error={fe.actionType}>
            <select id="rule-actionType" value={form.actionType} disabled={!!r} onChange={(e) => set('actionType', e.currentTarget.value)} {...describedBy('rule-actionType', false, fe.actionType)}>
              {props.types.map((t) => (
                <option value={t.type}>{t.type}</option>
              ))}
            </select>
          </Field>
          <Field id="rule-kind" label="Kind" error={fe.kind}>
            <select id="rule-kind" value={form.kind} disabled={!!r} onChange={(e) => set('kind', e.currentTarget.value as SafetyRuleKind)} {...describedBy('rule-kind', false, fe.kind)}>
              {KINDS.map((k) => (
                <option value={k.kind}>{k.label}</option>
              ))}
            </select>
          </Field>
        </div>
        {typeInfo && <p class="hint">{typeInfo.description}</p>}
        {form.kind === 'RATE_LIMIT' && (
          <div class="grid2">
            <Field id="rule-limit" label="Limit (actions per window, per user)" error={fe.limit}>
              <input id="rule-limit" inputMode="numeric" value={form.limit} onInput={(e) => set('limit', e.currentTarget.value)} {...describedBy('rule-limit', false, fe.limit)} />
            </Field>
            <Field id="rule-windowSeconds" label="Window (seconds)" hint="3600 is an hour, 86400 a day." error={fe.windowSeconds}>
              <input
                id="rule-windowSeconds"
                inputMode="numeric"
                value={form.windowSeconds}
                onInput={(e) => set('windowSeconds', e.currentTarget.value)}
                {...describedBy('rule-windowSeconds', true, fe.windowSeconds)}
              />
            </Field>
          </div>
        )}
        <Field
          id="rule-condition"
          label="Condition"
          hint={
            <>
              Optional. A CEL expression over <code>payload</code>, <code>type</code>, <code>user</code> (id, handle, email, domain, kycStatus) and <code>now</code>,
              e.g. <code>payload.amount &gt; 100</code>. The rule applies only where it is true; empty: always.
            </>
          }
          error={fe.condition}
        >
          <textarea
            id="rule-condition"
            class="mono"
            rows={3}
            spellcheck={false}
            value={form.condition}
            onInput={(e) => set('condition', e.currentTarget.value)}
            {...describedBy('rule-condition', true, fe.condition)}
          />
        </Field>
        {fe.condition && <Caret text={form.condition} message={fe.condition} />}
        {form.kind === 'REQUIRES_APPROVAL' && (
          <>
            <Field id="rule-approvalsRequired" label="Approvals required" hint="Distinct approvers, 1 to 10 (empty: 1)." error={fe.approvalsRequired}>
              <input
                id="rule-approvalsRequired"
                inputMode="numeric"
                value={form.approvalsRequired}
                onInput={(e) => set('approvalsRequired', e.currentTarget.value)}
                {...describedBy('rule-approvalsRequired', true, fe.approvalsRequired)}
              />
            </Field>
            <div class="grid2">
              <Field id="rule-escalateAfterMinutes" label="Escalate after (minutes)" hint="Empty: never." error={fe.escalateAfterMinutes}>
                <input
                  id="rule-escalateAfterMinutes"
                  inputMode="numeric"
                  value={form.escalateAfterMinutes}
                  onInput={(e) => set('escalateAfterMinutes', e.currentTarget.value)}
                  {...describedBy('rule-escalateAfterMinutes', true, fe.escalateAfterMinutes)}
                />
              </Field>
              <Field id="rule-escalateTo" label="Escalate to" hint="Email addresses or user handles, one per line." error={fe.escalateTo}>
                <textarea
                  id="rule-escalateTo"
                  rows={2}
                  value={form.escalateTo}
                  onInput={(e) => set('escalateTo', e.currentTarget.value)}
                  {...describedBy('rule-escalateTo', true, fe.escalateTo)}
                />
              </Field>
            </div>
          </>
        )}
        <Field id="rule-graceSeconds" label="Grace period (seconds)" hint="For types that cannot be undone: approved actions wait this long, cancellable (0 to 86400)." error={fe.graceSeconds}>
          <input
            id="rule-graceSeconds"
            inputMode="numeric"
            value={form.graceSeconds}
            onInput={(e) => set('graceSeconds', e.currentTarget.value)}
            {...describedBy('rule-graceSeconds', true, fe.graceSeconds)}
          />
        </Field>
        <Field id="rule-description" label="Note" error={fe.description}>
          <input id="rule-description" value={form.description} onInput={(e) => set('description', e.currentTarget.value)} {...describedBy('rule-description', false, fe.description)} />
        </Field>
        <Field id="rule-enabled" label="Enabled" check error={fe.enabled}>
          <input id="rule-enabled" type="checkbox" checked={form.enabled} onChange={(e) => set('enabled', e.currentTarget.checked)} />
        </Field>
        <FormErrors messages={general} />
        <SaveCancel label="Save rule" busy={busy} onCancel={props.onCancel} />
      </form>
      <ConditionTester apiKey={props.apiKey} type={form.actionType} condition={form.condition} schema={typeInfo?.payloadSchema} users={props.users} />
    </section>
  );
}

/** The condition's line with a caret under the column an INVALID_CONDITION message names (for sighted users; the message says it in words). */
function Caret({ text, message }: { text: string; message: string }) {
  const m = /\(line (\d+), column (\d+)\)/.exec(message);
  if (!m) return null;
  const line = text.split('\n')[Number(m[1]) - 1];
  if (line === undefined) return null;
  return (
    <pre class="caret mono" aria-hidden="true">
      {line}
      {'\n'}
      {' '.repeat(Math.max(0, Number(m[2]) - 1))}^
    </pre>
  );
}

function exampleOf(schema: unknown): string {
  const examples = (schema as { examples?: unknown[] } | undefined)?.examples;
  return JSON.stringify(Array.isArray(examples) && examples.length ? examples[0] : {}, null, 2);
}

type TestResult = { kind: 'matches' } | { kind: 'no-match' } | { kind: 'unevaluated'; message: string } | { kind: 'error'; message: string };

/** Runs the condition being edited against a sample payload (testCondition: compiled and evaluated as at run time, nothing written). */
function ConditionTester(props: { apiKey: string; type: string; condition: string; schema: unknown; users: User[] }) {
  const [payload, setPayload] = useState(() => exampleOf(props.schema));
  // A ref, not state: the effect below runs after its render and must see typing done meanwhile.
  const edited = useRef(false);
  const [userId, setUserId] = useState('');
  const [result, setResult] = useState<TestResult | null>(null);
  const [payloadError, setPayloadError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  // A new type brings its own example, unless the admin already wrote a payload.
  useEffect(() => {
    if (!edited.current) setPayload(exampleOf(props.schema));
    setResult(null);
  }, [props.type, props.schema]);
  useEffect(() => setResult(null), [props.condition]);

  async function test() {
    setResult(null);
    setPayloadError(undefined);
    let value: unknown;
    try {
      value = JSON.parse(payload);
    } catch (e) {
      setPayloadError(`Not valid JSON: ${(e as Error).message}`);
      return;
    }
    if (!props.condition.trim()) {
      setResult({ kind: 'matches' });
      return;
    }
    setBusy(true);
    try {
      const r = (await request(props.apiKey, TestConditionQuery, { type: props.type, condition: props.condition, payload: value, userId: userId || null })).testCondition;
      if (r.errors.length) {
        const payloadErrors = r.errors.filter((e) => e.field?.[0] === 'payload');
        if (payloadErrors.length) setPayloadError(payloadErrors.map((e) => (e.field!.length > 1 ? `${e.field!.slice(1).join('.')}: ${e.message}` : e.message)).join(' '));
        setResult({ kind: 'error', message: r.errors.map((e) => `${e.code}: ${e.message}`).join(' ') });
      } else if (r.evaluationError) setResult({ kind: 'unevaluated', message: r.evaluationError });
      else setResult(r.matches ? { kind: 'matches' } : { kind: 'no-match' });
    } catch (e) {
      setResult({ kind: 'error', message: (e as Error).message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="tester">
      <h3 id="tester-title">Test condition</h3>
      <p class="muted small">Checks the condition above against a sample payload of {props.type || 'the type'}, as the engine would; nothing is saved.</p>
      <Field id="test-payload" label="Sample payload (JSON)" error={payloadError}>
        <textarea
          id="test-payload"
          class="mono"
          rows={6}
          spellcheck={false}
          value={payload}
          onInput={(e) => {
            edited.current = true;
            setPayload(e.currentTarget.value);
          }}
          {...describedBy('test-payload', false, payloadError)}
        />
      </Field>
      {props.users.length > 0 && (
        <Field id="test-user" label="As user (optional)">
          <select id="test-user" value={userId} onChange={(e) => setUserId(e.currentTarget.value)}>
            <option value="">No particular user</option>
            {props.users.map((u) => (
              <option value={u.id}>{u.handle}</option>
            ))}
          </select>
        </Field>
      )}
      <div class="buttons">
        <button type="button" class="secondary" disabled={busy || !props.type} onClick={() => void test()}>
          Test condition
        </button>
      </div>
      <p class="test-result" role="status" aria-live="polite">
        {result?.kind === 'matches' && (
          <span class="verdict ok">
            Result: <strong>matches</strong>
            {props.condition.trim() ? '' : ' (no condition: the rule always applies)'}
          </span>
        )}
        {result?.kind === 'no-match' && (
          <span class="verdict neutral">
            Result: <strong>does not match</strong> (the rule would not apply)
          </span>
        )}
        {result?.kind === 'unevaluated' && (
          <span class="verdict warn-verdict">
            Result: <strong>matches</strong>, because the condition cannot be evaluated on this payload ({result.message}); at run time such a rule applies.
          </span>
        )}
        {result?.kind === 'error' && (
          <span class="verdict bad">
            Result: <strong>error</strong>. {result.message}
          </span>
        )}
      </p>
    </div>
  );
}
