import { useEffect, useState } from 'preact/hooks';
import { request } from './api';
import { AdminTypesQuery, CreateStandingApprovalMutation, RevokeStandingApprovalMutation, StandingApprovalsQuery } from './ops';
import type { ConsoleStandingApprovalsQuery } from './generated/graphql';
import { ConfirmButton, describedBy, Field, FormErrors, knownUsers, useSubmit, Notices } from './form';
import { Time } from './view';

type Grant = ConsoleStandingApprovalsQuery['standingApprovals'][number];
type User = { id: string; handle: string };

/** A value for `<input type="datetime-local">`, in local time. */
function localInput(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Admins: approvals given in advance (one type, one user or everyone, optionally a condition, until a date). */
export function StandingApprovalsPage({ apiKey }: { apiKey: string }) {
  const [grants, setGrants] = useState<Grant[] | null>(null);
  const [showEnded, setShowEnded] = useState(false);
  const [types, setTypes] = useState<string[]>([]);
  const [users, setUsers] = useState<User[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);

  const load = () =>
    request(apiKey, StandingApprovalsQuery, { active: showEnded ? false : true })
      .then((r) => setGrants(r.standingApprovals))
      .catch((e: Error) => setError(e.message));
  useEffect(() => void load(), [apiKey, showEnded]);
  useEffect(() => {
    request(apiKey, AdminTypesQuery)
      .then((r) => {
        setTypes(r.actionTypes.map((t) => t.type).filter((t) => t !== 'make_payment'));
        setUsers(knownUsers(r.apiKeys));
      })
      .catch((e: Error) => setError(e.message));
  }, [apiKey]);

  const handle = (id: string | null | undefined) => (id ? (users.find((u) => u.id === id)?.handle ?? id) : 'every user');

  async function revoke(g: Grant) {
    setBusy(g.id);
    setError(null);
    setNotice(null);
    try {
      const r = (await request(apiKey, RevokeStandingApprovalMutation, { id: g.id })).revokeStandingApproval;
      if (r.errors.length) setError(r.errors.map((e) => e.message).join(' '));
      else setNotice(`Revoked: ${g.type} for ${handle(g.userId)} no longer goes ahead without a person.`);
      await load();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  }

  return (
    <>
      <section>
        <h2 id="standing-title">Standing approvals</h2>
        <p class="muted">Approve in advance the actions of one type (for one user or everyone, optionally only those matching a condition) until a date. Payments never.</p>
        <GrantForm
          apiKey={apiKey}
          types={types}
          users={users}
          onCreated={(text) => {
            setNotice(text);
            void load();
          }}
        />
      </section>
      <section>
        <h2 id="standing-list-title">{showEnded ? 'All standing approvals' : 'In force'}</h2>
        <div class="field check">
          <input id="standing-ended" type="checkbox" checked={showEnded} onChange={(e) => setShowEnded(e.currentTarget.checked)} />
          <label for="standing-ended">Show revoked and expired too</label>
        </div>
        <Notices error={error} saved={notice} />
        {grants === null ? (
          <p>Loading…</p>
        ) : grants.length === 0 ? (
          <p class="empty">None.</p>
        ) : (
          <ul class="cards">
            {grants.map((g) => {
              const hid = `grant-${g.id}`;
              return (
                <li class={`card compact${g.active ? '' : ' revoked'}`} aria-labelledby={hid}>
                  <div class="card-head">
                    <h3 id={hid} class="item-title">
                      <code>{g.type}</code> for {handle(g.userId)}
                    </h3>
                    <span class="badges">{g.active ? <span class="badge set">in force</span> : <span class="badge off">{g.revokedAt ? 'revoked' : 'expired'}</span>}</span>
                  </div>
                  {g.condition && (
                    <p>
                      Only when <code>{g.condition}</code>
                    </p>
                  )}
                  <p class="meta">
                    Until <Time at={g.expiresAt} /> · granted <Time at={g.createdAt} />
                    {g.revokedAt && (
                      <>
                        {' '}
                        · revoked <Time at={g.revokedAt} />
                      </>
                    )}
                  </p>
                  {g.active && (
                    <ConfirmButton label="Revoke" question={`Revoke the standing approval of ${g.type} for ${handle(g.userId)}?`} busy={busy === g.id} onConfirm={() => void revoke(g)} />
                  )}
                </li>
              );
            })}
          </ul>
        )}
      </section>
    </>
  );
}

function GrantForm(props: { apiKey: string; types: string[]; users: User[]; onCreated: (text: string) => void }) {
  const [type, setType] = useState('');
  const [userId, setUserId] = useState('');
  const [condition, setCondition] = useState('');
  const [expires, setExpires] = useState(() => localInput(new Date(Date.now() + 7 * 86_400_000)));
  const { fieldErrors, setFieldErrors, general, busy, submit } = useSubmit();
  useEffect(() => {
    // A choice made meanwhile wins over the default (this effect runs after the render that brought the types).
    setType((chosen) => chosen || props.types[0] || '');
  }, [props.types]);

  async function create(e: Event) {
    e.preventDefault();
    const at = new Date(expires);
    if (!expires || Number.isNaN(at.getTime())) {
      setFieldErrors({ expiresAt: 'Pick a date and time.' });
      return;
    }
    const input = { type, userId: userId || null, condition: condition.trim() || null, expiresAt: at.toISOString() };
    await submit(
      e.currentTarget as HTMLFormElement,
      async () => (await request(props.apiKey, CreateStandingApprovalMutation, { input })).createStandingApproval,
      (r) => r.standingApproval,
      () => {
        setCondition('');
        props.onCreated(`Created: ${type} for ${userId ? (props.users.find((u) => u.id === userId)?.handle ?? userId) : 'every user'} goes ahead without a person until ${at.toLocaleString()}.`);
      },
    );
  }

  const fe = fieldErrors;
  return (
    <form class="card editor" onSubmit={create} noValidate>
      <h3 id="grant-form-title">Approve in advance</h3>
      <div class="grid2">
        <Field id="grant-type" label="Action type" error={fe.type}>
          <select id="grant-type" value={type} onChange={(e) => setType(e.currentTarget.value)} {...describedBy('grant-type', false, fe.type)}>
            {props.types.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
        </Field>
        <Field id="grant-user" label="For" error={fe.userId}>
          <select id="grant-user" value={userId} onChange={(e) => setUserId(e.currentTarget.value)} {...describedBy('grant-user', false, fe.userId)}>
            <option value="">Every user of the space</option>
            {props.users.map((u) => (
              <option value={u.id}>{u.handle}</option>
            ))}
          </select>
        </Field>
      </div>
      <Field id="grant-condition" label="Condition" hint="Optional CEL expression, e.g. payload.total < 50: only matching actions are approved." error={fe.condition}>
        <textarea
          id="grant-condition"
          class="mono"
          rows={2}
          spellcheck={false}
          value={condition}
          onInput={(e) => setCondition(e.currentTarget.value)}
          {...describedBy('grant-condition', true, fe.condition)}
        />
      </Field>
      <Field id="grant-expires" label="Until" hint="At most 366 days ahead." error={fe.expiresAt}>
        <input id="grant-expires" type="datetime-local" value={expires} onInput={(e) => setExpires(e.currentTarget.value)} {...describedBy('grant-expires', true, fe.expiresAt)} />
      </Field>
      <FormErrors messages={general} />
      <div class="buttons">
        <button type="submit" disabled={busy || !type}>
          Create standing approval
        </button>
      </div>
    </form>
  );
}
