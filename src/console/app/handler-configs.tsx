import { useEffect, useState } from 'preact/hooks';
import { request } from './api';
import { AdminTypesQuery, HandlerConfigsQuery, UpsertHandlerConfigMutation } from './ops';
import type { ConsoleHandlerConfigsQuery } from './generated/graphql';
import { describedBy, Field, FormErrors, useFocusHeading, parseJson, focusFirstInvalid, Notices, SaveCancel, useSubmit } from './form';
import { Time } from './view';

type Config = ConsoleHandlerConfigsQuery['handlerConfigs'][number];

/**
 * Admins: how each handler reaches each provider. Settings are plain JSON; secrets are
 * write-only: the page only ever knows their names and shows them as "set", never a value, and
 * the fields to enter them always start empty.
 */
export function HandlerConfigsPage({ apiKey }: { apiKey: string }) {
  const [configs, setConfigs] = useState<Config[] | null>(null);
  const [handlers, setHandlers] = useState<string[]>([]);
  const [editing, setEditing] = useState<Config | 'new' | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = () =>
    request(apiKey, HandlerConfigsQuery)
      .then((r) => setConfigs(r.handlerConfigs))
      .catch((e: Error) => setError(e.message));
  useEffect(() => {
    void load();
    request(apiKey, AdminTypesQuery)
      .then((r) => setHandlers([...new Set(r.actionTypes.flatMap((t) => t.handlers))].filter((h) => h !== 'manual').sort()))
      .catch((e: Error) => setError(e.message));
  }, [apiKey]);

  return (
    <>
      <section>
        <h2 id="handlers-title">Handler configuration</h2>
        <p class="muted">How each handler reaches a provider (settings), with its credentials (secrets). Secrets are write-only: stored encrypted, never shown again.</p>
        <Notices error={error} saved={saved} />
        {editing === null && (
          <div class="buttons">
            <button type="button" onClick={() => (setSaved(null), setEditing('new'))}>
              New configuration
            </button>
          </div>
        )}
      </section>
      {editing !== null && (
        <ConfigEditor
          key={editing === 'new' ? 'new' : editing.id}
          apiKey={apiKey}
          config={editing === 'new' ? null : editing}
          handlers={handlers}
          onCancel={() => setEditing(null)}
          onSaved={(c) => {
            setSaved(`Saved ${c.handler} for ${c.provider === '*' ? 'every provider' : c.provider}.`);
            setEditing(null);
            void load();
          }}
        />
      )}
      <section>
        <h2 id="handlers-list-title">Configurations</h2>
        {configs === null ? (
          <p>Loading…</p>
        ) : configs.length === 0 ? (
          <p class="empty">No handler is configured in this space yet: handlers use the server's defaults.</p>
        ) : (
          <ul class="cards">
            {configs.map((c) => {
              const hid = `config-${c.id}`;
              return (
                <li class="card compact" aria-labelledby={hid}>
                  <div class="card-head">
                    <h3 id={hid} class="item-title">
                      {c.handler} · {c.provider === '*' ? 'every provider' : c.provider}
                    </h3>
                    <span class="badges">{!c.enabled && <span class="badge off">off</span>}</span>
                  </div>
                  <dl class="details">
                    <div>
                      <dt>Settings</dt>
                      <dd>
                        <pre class="mono">{JSON.stringify(c.settings, null, 2)}</pre>
                      </dd>
                    </div>
                    <div>
                      <dt>Secrets</dt>
                      <dd>
                        <SecretStatus names={c.secretNames} />
                      </dd>
                    </div>
                  </dl>
                  <div class="card-foot">
                    <p class="meta">
                      Changed <Time at={c.updatedAt} />
                    </p>
                    <button type="button" class="secondary" aria-label={`Edit configuration ${c.handler} for ${c.provider}`} onClick={() => (setSaved(null), setEditing(c))}>
                      Edit
                    </button>
                  </div>
                </li>
              );
            })}
          </ul>
        )}
      </section>
    </>
  );
}

function SecretStatus({ names }: { names: readonly string[] }) {
  if (!names.length) return <span class="badge">not set</span>;
  return (
    <ul class="secret-list">
      {names.map((n) => (
        <li>
          <code>{n}</code>: <span class="badge set">set</span>
        </li>
      ))}
    </ul>
  );
}

interface SecretRow {
  name: string;
  value: string;
}

function ConfigEditor(props: { apiKey: string; config: Config | null; handlers: string[]; onSaved: (c: { handler: string; provider: string }) => void; onCancel: () => void }) {
  const heading = useFocusHeading();
  const c = props.config;
  const [handler, setHandler] = useState(c?.handler ?? '');
  const [provider, setProvider] = useState(c?.provider ?? '*');
  const [settings, setSettings] = useState(c ? JSON.stringify(c.settings, null, 2) : '{}');
  const [enabled, setEnabled] = useState(c?.enabled ?? true);
  // Names only: a stored secret's value never reaches the page.
  const [secrets, setSecrets] = useState<SecretRow[]>(() => (c?.secretNames.length ? c.secretNames.map((name) => ({ name, value: '' })) : [{ name: '', value: '' }]));
  const [removeSecrets, setRemoveSecrets] = useState(false);
  const { fieldErrors, setFieldErrors, general, setGeneral, busy, submit } = useSubmit();
  const stored = new Set(c?.secretNames ?? []);

  useEffect(() => {
    // A choice made meanwhile wins over the default (this effect runs after the render that brought the handlers).
    setHandler((chosen) => chosen || props.handlers[0] || '');
  }, [props.handlers]);

  async function save(e: Event) {
    e.preventDefault();
    const formEl = e.currentTarget as HTMLFormElement;
    const local: Record<string, string> = {};
    const parsed = parseJson(settings, 'Settings');
    if (!parsed.ok) local.settings = parsed.error;
    let secretsInput: Record<string, string> | null | undefined;
    if (removeSecrets) secretsInput = null;
    else {
      const filled = secrets.filter((s) => s.value !== '');
      const dropped = [...stored].filter((name) => !secrets.some((s) => s.name === name));
      if (!filled.length && dropped.length)
        local.secrets = `${dropped.join(', ')} would stay stored: to remove every secret, tick “Remove the stored secrets”; to keep only some, enter the values of those you keep.`;
      else if (filled.length) {
        // The stored secrets are replaced as a whole: a stored name left empty would be dropped.
        const missing = secrets.filter((s) => s.value === '' && s.name.trim());
        const unnamed = filled.filter((s) => !s.name.trim());
        if (unnamed.length) local.secrets = 'Give every secret a name.';
        else if (missing.length)
          local.secrets = `Enter ${missing.map((s) => s.name).join(', ')} too, or remove ${missing.length === 1 ? 'it' : 'them'}: the stored secrets are replaced together.`;
        else secretsInput = Object.fromEntries(filled.map((s) => [s.name.trim(), s.value]));
      }
    }
    setFieldErrors(local);
    setGeneral([]);
    if (Object.keys(local).length) return focusFirstInvalid(formEl);
    const input = {
      handler,
      provider: provider.trim(),
      enabled,
      ...(parsed.ok && parsed.value !== undefined ? { settings: parsed.value } : {}),
      ...(secretsInput !== undefined ? { secrets: secretsInput } : {}),
    };
    await submit(
      formEl,
      async () => (await request(props.apiKey, UpsertHandlerConfigMutation, { input })).upsertHandlerConfig,
      (r) => r.config,
      (config) => {
        // Forget what was typed at once: the values were sent, they are not kept in the page.
        setSecrets([]);
        props.onSaved(config);
      },
    );
  }

  const fe = fieldErrors;
  return (
    <section class="card editor">
      <h2 id="config-editor-title" ref={heading} tabIndex={-1}>{c ? `Edit ${c.handler} for ${c.provider === '*' ? 'every provider' : c.provider}` : 'New handler configuration'}</h2>
      <form onSubmit={save} noValidate autoComplete="off">
        <div class="grid2">
          <Field id="config-handler" label="Handler" error={fe.handler}>
            <select id="config-handler" value={handler} disabled={!!c} onChange={(e) => setHandler(e.currentTarget.value)} {...describedBy('config-handler', false, fe.handler)}>
              {(c && !props.handlers.includes(c.handler) ? [c.handler, ...props.handlers] : props.handlers).map((h) => (
                <option value={h}>{h}</option>
              ))}
            </select>
          </Field>
          <Field id="config-provider" label="Provider" hint="A provider name (e.g. an order's provider), or * for every provider." error={fe.provider}>
            <input
              id="config-provider"
              value={provider}
              readOnly={!!c}
              onInput={(e) => setProvider(e.currentTarget.value)}
              {...describedBy('config-provider', true, fe.provider)}
            />
          </Field>
        </div>
        <Field id="config-settings" label="Settings (JSON)" hint="Not secret: URLs, addresses, options. Credentials go in secrets below." error={fe.settings}>
          <textarea
            id="config-settings"
            class="mono"
            rows={5}
            spellcheck={false}
            value={settings}
            onInput={(e) => (setSettings(e.currentTarget.value), setFieldErrors(({ settings: _, ...rest }) => rest))}
            {...describedBy('config-settings', true, fe.settings)}
          />
        </Field>
        <fieldset class="secrets" aria-describedby={fe.secrets ? 'secrets-help config-secrets-error' : 'secrets-help'}>
          <legend>Secrets</legend>
          <p id="secrets-help" class="hint">
            {stored.size
              ? 'Stored secrets are never shown. Leave every value empty to keep them; to change any, enter all of them again (they are replaced together).'
              : 'None stored. Enter a name and a value for each.'}
          </p>
          {secrets.map((s, i) => {
            const nameId = `secret-${i}-name`;
            const valueId = `secret-${i}-value`;
            const isStored = stored.has(s.name);
            const update = (patch: Partial<SecretRow>) => {
              setSecrets(secrets.map((x, j) => (j === i ? { ...x, ...patch } : x)));
              setFieldErrors(({ secrets: _, ...rest }) => rest);
            };
            return (
              <div class="secret-row">
                <div class="field">
                  <label for={nameId}>Secret name</label>
                  <input id={nameId} value={s.name} readOnly={isStored} spellcheck={false} onInput={(e) => update({ name: e.currentTarget.value })} />
                </div>
                <div class="field">
                  <label for={valueId}>{s.name ? `Value of ${s.name}` : 'Secret value'}</label>
                  <input
                    id={valueId}
                    type="password"
                    autoComplete="new-password"
                    spellcheck={false}
                    placeholder={isStored ? 'set (not shown)' : 'not set'}
                    value={s.value}
                    onInput={(e) => update({ value: e.currentTarget.value })}
                    aria-describedby={`${valueId}-state`}
                  />
                  <small id={`${valueId}-state`} class="hint">
                    {isStored ? 'Stored: set. Leave empty to keep it.' : 'Not set.'}
                  </small>
                </div>
                <button type="button" class="secondary" aria-label={`Remove secret ${s.name || i + 1}`} onClick={() => setSecrets(secrets.filter((_, j) => j !== i))}>
                  Remove
                </button>
              </div>
            );
          })}
          <div class="buttons">
            <button type="button" class="secondary" onClick={() => setSecrets([...secrets, { name: '', value: '' }])}>
              Add secret
            </button>
          </div>
          {stored.size > 0 && (
            <div class="field check">
              <input id="config-remove-secrets" type="checkbox" checked={removeSecrets} onChange={(e) => setRemoveSecrets(e.currentTarget.checked)} />
              <label for="config-remove-secrets">Remove the stored secrets</label>
            </div>
          )}
          {fe.secrets && (
            <p id="config-secrets-error" class="error field-error">
              {fe.secrets}
            </p>
          )}
        </fieldset>
        <Field id="config-enabled" label="Enabled" check error={fe.enabled}>
          <input id="config-enabled" type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} />
        </Field>
        <FormErrors messages={general} />
        <SaveCancel label="Save configuration" busy={busy} onCancel={props.onCancel} />
      </form>
    </section>
  );
}
