import { useEffect, useState } from 'preact/hooks';
import { request } from './api';
import { UpsertWebhookEndpointMutation, WebhookDeliveriesQuery, WebhookEndpointsQuery } from './ops';
import type { ActionStatus, ConsoleWebhookDeliveriesQuery, ConsoleWebhookEndpointsQuery } from './generated/graphql';
import { describedBy, Field, FormErrors, useFocusHeading, Notices, SaveCancel, useSubmit } from './form';
import { Status, Time } from './view';

type Endpoint = ConsoleWebhookEndpointsQuery['webhookEndpoints'][number];
type Delivery = ConsoleWebhookDeliveriesQuery['webhookDeliveries']['edges'][number]['node'];
const STATUSES: ActionStatus[] = ['PENDING', 'APPROVED', 'EXECUTING', 'COMPLETED', 'FAILED', 'REJECTED', 'BLOCKED', 'CANCELLED', 'EXPIRED', 'ROLLED_BACK'];

/** A Standard Webhooks secret: whsec_ and the base64 of 32 random bytes, made in this browser. */
function newSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return `whsec_${btoa(String.fromCharCode(...bytes))}`;
}

/** Admins: where status changes are sent (signed per Standard Webhooks), and each endpoint's delivery log. */
export function WebhooksPage({ apiKey }: { apiKey: string }) {
  const [endpoints, setEndpoints] = useState<Endpoint[] | null>(null);
  const [editing, setEditing] = useState<Endpoint | 'new' | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = () =>
    request(apiKey, WebhookEndpointsQuery)
      .then((r) => setEndpoints(r.webhookEndpoints))
      .catch((e: Error) => setError(e.message));
  useEffect(() => void load(), [apiKey]);

  return (
    <>
      <section>
        <h2 id="webhooks-title">Webhook endpoints</h2>
        <p class="muted">Every status change of this space's actions is sent to each endpoint, signed with its secret (Standard Webhooks). Secrets are write-only.</p>
        <Notices error={error} saved={saved} />
        {editing === null && (
          <div class="buttons">
            <button type="button" onClick={() => (setSaved(null), setEditing('new'))}>
              New endpoint
            </button>
          </div>
        )}
      </section>
      {editing !== null && (
        <EndpointEditor
          key={editing === 'new' ? 'new' : editing.id}
          apiKey={apiKey}
          endpoint={editing === 'new' ? null : editing}
          onCancel={() => setEditing(null)}
          onSaved={(url) => {
            setSaved(`Saved ${url}.`);
            setEditing(null);
            void load();
          }}
        />
      )}
      <section>
        <h2 id="webhooks-list-title">Endpoints</h2>
        {endpoints === null ? (
          <p>Loading…</p>
        ) : endpoints.length === 0 ? (
          <p class="empty">No endpoints.</p>
        ) : (
          <ul class="cards">
            {endpoints.map((ep) => {
              const hid = `endpoint-${ep.id}`;
              return (
                <li class="card compact" aria-labelledby={hid}>
                  <div class="card-head">
                    <h3 id={hid} class="item-title">
                      <code>{ep.url}</code>
                    </h3>
                    <span class="badges">{ep.enabled ? <span class="badge set">on</span> : <span class="badge off">off</span>}</span>
                  </div>
                  <p class="meta">
                    {ep.events.length ? `Sends: ${[...ep.events].sort((a, b) => STATUSES.indexOf(a) - STATUSES.indexOf(b)).map((s) => s.toLowerCase().replace('_', ' ')).join(', ')}` : 'Sends every status'}
                    {ep.consecutiveFailures > 0 && ` · ${ep.consecutiveFailures} failed attempts in a row`}
                  </p>
                  {ep.disabledReason && <p class="warn">Disabled by the engine: {ep.disabledReason}</p>}
                  <div class="buttons">
                    <button type="button" class="secondary" aria-label={`Edit endpoint ${ep.url}`} onClick={() => (setSaved(null), setEditing(ep))}>
                      Edit
                    </button>
                    <button type="button" class="secondary" aria-expanded={open === ep.id} aria-controls={`${hid}-log`} onClick={() => setOpen(open === ep.id ? null : ep.id)}>
                      Delivery log
                    </button>
                  </div>
                  {open === ep.id && <DeliveryLog id={`${hid}-log`} apiKey={apiKey} endpointId={ep.id} />}
                </li>
              );
            })}
          </ul>
        )}
      </section>
    </>
  );
}

function DeliveryLog({ id, apiKey, endpointId }: { id: string; apiKey: string; endpointId: string }) {
  const [rows, setRows] = useState<Delivery[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () =>
    request(apiKey, WebhookDeliveriesQuery, { endpointId })
      .then((r) => setRows(r.webhookDeliveries.edges.map((e) => e.node)))
      .catch((e: Error) => setError(e.message));
  useEffect(() => void load(), [endpointId]);
  return (
    <div id={id} class="delivery-log">
      <h4>Latest deliveries</h4>
      {error && <p class="error">{error}</p>}
      {rows === null ? (
        <p>Loading…</p>
      ) : rows.length === 0 ? (
        <p class="empty">Nothing sent yet.</p>
      ) : (
        <ol class="deliveries" aria-label="Deliveries to this endpoint, newest first">
          {rows.map((d) => (
            <li>
              <Status status={d.status} />
              <span>
                {d.state.toLowerCase()}, {d.attempts} attempt{d.attempts === 1 ? '' : 's'}
                {d.lastStatusCode != null && <>, HTTP {d.lastStatusCode}</>}
              </span>
              <span class="muted small">
                action <code>{d.actionId.slice(0, 8)}</code> · <Time at={d.createdAt} />
                {d.state === 'PENDING' && d.nextAttemptAt && (
                  <>
                    {' '}
                    · next try <Time at={d.nextAttemptAt} />
                  </>
                )}
              </span>
              {d.lastError && <span class="error small">{d.lastError}</span>}
            </li>
          ))}
        </ol>
      )}
      <button type="button" class="secondary" onClick={() => void load()}>
        Refresh log
      </button>
    </div>
  );
}

function EndpointEditor(props: { apiKey: string; endpoint: Endpoint | null; onSaved: (url: string) => void; onCancel: () => void }) {
  const heading = useFocusHeading();
  const ep = props.endpoint;
  const [url, setUrl] = useState(ep?.url ?? '');
  const [secret, setSecret] = useState('');
  const [showSecret, setShowSecret] = useState(false);
  const [events, setEvents] = useState<ActionStatus[]>(ep?.events ?? []);
  const [enabled, setEnabled] = useState(ep?.enabled ?? true);
  const { fieldErrors, setFieldErrors, general, busy, submit } = useSubmit();

  async function save(e: Event) {
    e.preventDefault();
    await submit(
      e.currentTarget as HTMLFormElement,
      async () => (await request(props.apiKey, UpsertWebhookEndpointMutation, { input: { url: url.trim(), secret, events, enabled } })).upsertWebhookEndpoint,
      (r) => r.endpoint,
      (endpoint) => {
        setSecret('');
        props.onSaved(endpoint.url);
      },
    );
  }

  const fe = fieldErrors;
  return (
    <section class="card editor">
      <h2 id="endpoint-editor-title" ref={heading} tabIndex={-1}>{ep ? 'Edit endpoint' : 'New endpoint'}</h2>
      <form onSubmit={save} noValidate autoComplete="off">
        <Field id="endpoint-url" label="URL" hint="http or https; an endpoint is known by its URL." error={fe.url}>
          <input id="endpoint-url" type="url" value={url} readOnly={!!ep} onInput={(e) => (setUrl(e.currentTarget.value), setFieldErrors(({ url: _, ...rest }) => rest))} {...describedBy('endpoint-url', true, fe.url)} />
        </Field>
        <Field
          id="endpoint-secret"
          label="Signing secret"
          hint={
            ep
              ? 'Never shown. Enter the secret again to save (or generate a new one: the receiver must then use it).'
              : 'whsec_ followed by base64. Generate one here and give it to the receiver; it is not shown again after saving.'
          }
          error={fe.secret}
        >
          <input
            id="endpoint-secret"
            class="mono"
            type={showSecret ? 'text' : 'password'}
            autoComplete="new-password"
            spellcheck={false}
            value={secret}
            onInput={(e) => (setSecret(e.currentTarget.value), setFieldErrors(({ secret: _, ...rest }) => rest))}
            {...describedBy('endpoint-secret', true, fe.secret)}
          />
        </Field>
        <div class="buttons tight">
          <button
            type="button"
            class="secondary"
            onClick={() => {
              setSecret(newSecret());
              setShowSecret(true);
              setFieldErrors(({ secret: _, ...rest }) => rest);
            }}
          >
            Generate secret
          </button>
        </div>
        <fieldset class="statuses">
          <legend>Statuses to send</legend>
          <p class="hint">None ticked: every status.</p>
          <div class="checks">
            {STATUSES.map((s) => (
              <label class="check-inline">
                <input
                  type="checkbox"
                  checked={events.includes(s)}
                  onChange={(e) => setEvents(e.currentTarget.checked ? [...events, s] : events.filter((x) => x !== s))}
                />{' '}
                {s.toLowerCase().replace('_', ' ')}
              </label>
            ))}
          </div>
          {fe.events && <p class="error field-error">{fe.events}</p>}
        </fieldset>
        <Field id="endpoint-enabled" label="Enabled" check error={fe.enabled}>
          <input id="endpoint-enabled" type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} />
        </Field>
        <FormErrors messages={general} />
        <SaveCancel label="Save endpoint" busy={busy} onCancel={props.onCancel} />
      </form>
    </section>
  );
}
