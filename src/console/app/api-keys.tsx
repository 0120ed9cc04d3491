import { useEffect, useRef, useState } from 'preact/hooks';
import { request } from './api';
import { ApiKeysQuery, CreateApiKeyMutation, RevokeApiKeyMutation } from './ops';
import type { ConsoleApiKeysQuery, Role } from './generated/graphql';
import { ConfirmButton, describedBy, Field, FormErrors, useSubmit, Notices } from './form';
import { Time } from './view';

type Key = ConsoleApiKeysQuery['apiKeys'][number];
const ROLES: Role[] = ['AGENT', 'APPROVER', 'OPERATOR', 'ANALYST', 'ADMIN'];

/** Admins: the space's API keys (never the keys themselves), creating one (shown once) and revoking one. */
export function ApiKeysPage({ apiKey, principalId }: { apiKey: string; principalId: string }) {
  const [keys, setKeys] = useState<Key[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<{ key: string; prefix: string } | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);

  const load = () =>
    request(apiKey, ApiKeysQuery)
      .then((r) => setKeys(r.apiKeys))
      .catch((e: Error) => setError(e.message));
  useEffect(() => void load(), [apiKey]);

  async function revoke(k: Key) {
    setBusy(k.id);
    setError(null);
    setNotice(null);
    try {
      const r = (await request(apiKey, RevokeApiKeyMutation, { id: k.id })).revokeApiKey;
      if (r.errors.length) setError(r.errors.map((e) => e.message).join(' '));
      else setNotice(`Key ${k.prefix}… revoked: it no longer authenticates anything.`);
      await load();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  }

  const active = (keys ?? []).filter((k) => !k.revokedAt);
  const revoked = (keys ?? []).filter((k) => k.revokedAt);
  return (
    <>
      <section>
        <h2 id="keys-title">API keys</h2>
        <p class="muted">Each key acts in this space with one role. The key itself is shown once, when it is created; only its first characters are kept to tell keys apart.</p>
        {created ? (
          <NewKey value={created.key} onDone={() => setCreated(null)} />
        ) : (
          <CreateKeyForm
            apiKey={apiKey}
            onCreated={(key, prefix) => {
              setNotice(null);
              setCreated({ key, prefix });
              void load();
            }}
          />
        )}
      </section>
      <section>
        <h2 id="keys-list-title">Keys {keys && <span class="count">({active.length} active)</span>}</h2>
        <Notices error={error} saved={notice} />
        {keys === null ? (
          <p>Loading…</p>
        ) : (
          <ul class="cards">
            {[...active, ...revoked].map((k) => {
              const hid = `key-${k.id}`;
              return (
                <li class={`card compact${k.revokedAt ? ' revoked' : ''}`} aria-labelledby={hid}>
                  <div class="card-head">
                    <h3 id={hid} class="item-title">
                      <code>{k.prefix}…</code> {k.name && <span>{k.name}</span>}
                    </h3>
                    <span class="badges">
                      <span class="badge">{k.role.toLowerCase()}</span>
                      {k.principalId === principalId && <span class="badge own">you</span>}
                      {k.revokedAt && <span class="badge off">revoked</span>}
                    </span>
                  </div>
                  <p class="meta">
                    {k.userHandle && <>for {k.userHandle} · </>}created <Time at={k.createdAt} />
                    {k.revokedAt && (
                      <>
                        {' '}
                        · revoked <Time at={k.revokedAt} />
                      </>
                    )}
                  </p>
                  {!k.revokedAt && (
                    <ConfirmButton label="Revoke" question={`Revoke key ${k.prefix}…? Anything using it stops working at once.${k.principalId === principalId ? ' This is the key you are signed in with: the console stops working until you sign in with another.' : ''}`} busy={busy === k.id} onConfirm={() => void revoke(k)} />
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

function CreateKeyForm({ apiKey, onCreated }: { apiKey: string; onCreated: (key: string, prefix: string) => void }) {
  const [role, setRole] = useState<Role>('AGENT');
  const [name, setName] = useState('');
  const [userHandle, setUserHandle] = useState('');
  const [email, setEmail] = useState('');
  const { fieldErrors, general, busy, submit } = useSubmit();
  const needsUser = role === 'AGENT' || role === 'APPROVER';

  async function create(e: Event) {
    e.preventDefault();
    const input = {
      role,
      name: name.trim() || null,
      userHandle: userHandle.trim() || null,
      email: email.trim() || null,
    };
    await submit(
      e.currentTarget as HTMLFormElement,
      async () => (await request(apiKey, CreateApiKeyMutation, { input })).createApiKey,
      (r) => (r.key ? { key: r.key, prefix: r.apiKey?.prefix ?? '' } : null),
      ({ key, prefix }) => {
        setName('');
        setUserHandle('');
        setEmail('');
        onCreated(key, prefix);
      },
      { missing: 'The server did not return a key.' },
    );
  }

  const fe = fieldErrors;
  return (
    <form class="card editor" onSubmit={create} noValidate>
      <h3 id="create-key-title">Create a key</h3>
      <div class="grid2">
        <Field id="key-role" label="Role" error={fe.role}>
          <select id="key-role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)} {...describedBy('key-role', false, fe.role)}>
            {ROLES.map((r) => (
              <option value={r}>{r.toLowerCase()}</option>
            ))}
          </select>
        </Field>
        <Field id="key-name" label="Name" hint="What it is for, e.g. “calendar agent”." error={fe.name}>
          <input id="key-name" value={name} onInput={(e) => setName(e.currentTarget.value)} {...describedBy('key-name', true, fe.name)} />
        </Field>
        <Field id="key-user" label={needsUser ? 'User handle (required)' : 'User handle'} hint="The person it acts for; created if new." error={fe.userHandle}>
          <input id="key-user" value={userHandle} onInput={(e) => setUserHandle(e.currentTarget.value)} {...describedBy('key-user', true, fe.userHandle)} />
        </Field>
        <Field id="key-email" label="User's email" hint="Where approval requests go." error={fe.email}>
          <input id="key-email" type="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} {...describedBy('key-email', true, fe.email)} />
        </Field>
      </div>
      <FormErrors messages={general} />
      <div class="buttons">
        <button type="submit" disabled={busy}>
          Create key
        </button>
      </div>
    </form>
  );
}

/** The new key, this once: selectable text, a copy button, and a plain warning. */
function NewKey({ value, onDone }: { value: string; onDone: () => void }) {
  const [copied, setCopied] = useState<string | null>(null);
  const copyButton = useRef<HTMLButtonElement>(null);
  useEffect(() => copyButton.current?.focus(), []);
  async function copy() {
    try {
      await navigator.clipboard.writeText(value);
      setCopied('Copied to the clipboard.');
    } catch {
      // No clipboard permission: select the text so Ctrl+C copies it.
      const el = document.getElementById('new-key') as HTMLInputElement | null;
      el?.select();
      setCopied('Selected: press Ctrl+C (⌘C) to copy.');
    }
  }
  return (
    <div class="card new-key" role="region" aria-labelledby="new-key-title">
      <h3 id="new-key-title">New API key</h3>
      <p class="warn">
        <strong>Copy it now: you will not see it again.</strong> Only a hash is stored.
      </p>
      <label for="new-key">New key</label>
      <input id="new-key" class="mono" readOnly value={value} onFocus={(e) => e.currentTarget.select()} />
      <div class="buttons">
        <button type="button" onClick={() => void copy()} ref={copyButton}>
          Copy key
        </button>
        <button type="button" class="secondary" onClick={onDone}>
          Done
        </button>
      </div>
      <p role="status" class="ok small">
        {copied}
      </p>
    </div>
  );
}
