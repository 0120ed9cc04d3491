import { useEffect, useRef, useState } from 'preact/hooks';
import { loadPages, request, subscribe } from './api';
import { ActionEventsSubscription, ActionTypesQuery, ApproveMutation, PendingActionsQuery, RejectMutation } from './ops';
import type { ConsoleActionFieldsFragment, ConsoleActionTypesQuery } from './generated/graphql';
import { SchemaForm } from './schema-form';
import { Timeline } from './timeline';
import { Approvals, Details, Revisions, Status, Time } from './view';

type Action = ConsoleActionFieldsFragment;
const PAGE = 20;
type Types = ConsoleActionTypesQuery['actionTypes'];

/**
 * The approver's inbox: every PENDING action, kept live by `actionEvents` (a new one appears, a
 * decided one leaves). An action decided here stays below with its live timeline.
 */
export function Inbox({ apiKey }: { apiKey: string }) {
  const [pending, setPending] = useState<Action[] | null>(null);
  const [types, setTypes] = useState<Types>([]);
  const [followed, setFollowed] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [live, setLive] = useState(false);
  // Pages of pending actions shown: the newest PAGE at first, PAGE more for each "Show more".
  const [pages, setPages] = useState(1);
  const [more, setMore] = useState(false);
  // Actions seen leaving PENDING since the page opened: a reload that raced their event must not bring them back.
  const gone = useRef(new Set<string>());

  useEffect(() => {
    // Subscribe first, then load: nothing created in between is missed (upserts are idempotent).
    const stop = subscribe(
      apiKey,
      ActionEventsSubscription,
      {},
      ({ actionEvents: e }) => {
        setLive(true);
        if (e.status !== 'PENDING') gone.current.add(e.actionId);
        setPending((list) => {
          const rest = (list ?? []).filter((a) => a.id !== e.actionId);
          return e.status === 'PENDING' ? [e.action, ...rest].sort((a, b) => b.createdAt.localeCompare(a.createdAt)) : rest;
        });
      },
      (m) => setError(`Live updates stopped: ${m}`),
    );
    setLive(true);
    request(apiKey, ActionTypesQuery)
      .then((t) => setTypes(t.actionTypes))
      .catch((e: Error) => setError(e.message));
    return stop;
  }, [apiKey]);

  useEffect(() => {
    let cancelled = false;
    loadPages(pages, async (after) => (await request(apiKey, PendingActionsQuery, { first: PAGE, after })).actions)
      .then(({ nodes, more: next }) => {
        if (cancelled) return;
        setMore(next);
        setPending((now) => {
          const seen = new Set(nodes.map((a) => a.id));
          return [...(now ?? []).filter((a) => !seen.has(a.id)), ...nodes]
            .filter((a) => !gone.current.has(a.id))
            .sort((x, y) => y.createdAt.localeCompare(x.createdAt));
        });
      })
      .catch((e: Error) => setError(e.message));
    return () => {
      cancelled = true;
    };
  }, [apiKey, pages]);

  const decided = (id: string) => setFollowed((f) => [id, ...f.filter((x) => x !== id)].slice(0, 5));

  return (
    <>
      <section aria-labelledby="inbox-title">
        <h2 id="inbox-title">
          Waiting for your decision {pending && <span class="count">({pending.length}{more ? '+' : ''})</span>}
        </h2>
        <p class="muted live">{live ? 'Live: new requests appear here as agents make them.' : 'Connecting…'}</p>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {pending === null ? (
          <p>Loading…</p>
        ) : pending.length === 0 ? (
          <p class="empty">Nothing is waiting for you.</p>
        ) : (
          <ul class="cards">
            {pending.map((a) => (
              <InboxItem key={a.id} apiKey={apiKey} action={a} schema={types.find((t) => t.type === a.type)?.payloadSchema} onDecided={decided} />
            ))}
          </ul>
        )}
        {more && (
          <button type="button" class="secondary" onClick={() => setPages((n) => n + 1)}>
            Show more
          </button>
        )}
      </section>
      {followed.length > 0 && (
        <section aria-labelledby="decided-title">
          <h2 id="decided-title">Decided here</h2>
          {followed.map((id) => (
            <Timeline key={id} apiKey={apiKey} id={id} />
          ))}
        </section>
      )}
    </>
  );
}

function InboxItem(props: { apiKey: string; action: Action; schema: unknown; onDecided: (id: string) => void }) {
  const a = props.action;
  const [mode, setMode] = useState<'view' | 'edit' | 'reject'>('view');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [reason, setReason] = useState('');
  const headingId = `action-${a.id}-headline`;

  async function decide(run: () => Promise<{ errors: { message: string; field?: string[] | null }[] }>) {
    setBusy(true);
    setError(null);
    try {
      const r = await run();
      if (r.errors.length) setError(r.errors.map((e) => (e.field?.length ? `${e.field.join('.')}: ${e.message}` : e.message)).join(' '));
      else props.onDecided(a.id);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }
  const approve = (payload?: Record<string, unknown>, comment?: string) =>
    decide(async () => (await request(props.apiKey, ApproveMutation, { id: a.id, comment: comment || null, payload: payload ?? null, revision: a.revision })).approveAction);
  const reject = (e: Event) => {
    e.preventDefault();
    void decide(async () => (await request(props.apiKey, RejectMutation, { id: a.id, reason: reason.trim() || null })).rejectAction);
  };

  return (
    <li class="card" aria-labelledby={headingId}>
      <article aria-labelledby={headingId}>
        <h3 id={headingId}>{a.headline}</h3>
        <p class="meta">
          <Status status={a.status} /> <code>{a.type}</code> · <Time at={a.createdAt} />
          {a.approvalExpiresAt && (
            <>
              {' '}
              · expires <Time at={a.approvalExpiresAt} />
            </>
          )}
        </p>
        <Details action={a} />
        <Revisions action={a} />
        <Approvals action={a} />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {mode === 'view' && (
          <div class="buttons">
            <button type="button" disabled={busy} onClick={() => void approve()}>
              Approve
            </button>
            <button type="button" class="secondary" disabled={busy} onClick={() => setMode('edit')}>
              Approve with edits
            </button>
            <button type="button" class="danger" disabled={busy} onClick={() => setMode('reject')}>
              Reject
            </button>
          </div>
        )}
        {mode === 'edit' && (
          <SchemaForm
            idPrefix={`edit-${a.id}`}
            schema={props.schema}
            payload={(a.payload ?? {}) as Record<string, unknown>}
            submitLabel="Approve with edits"
            busy={busy}
            onSubmit={(payload, comment) => void approve(payload, comment)}
            onCancel={() => setMode('view')}
          />
        )}
        {mode === 'reject' && (
          <form class="reject-form" onSubmit={reject}>
            <div class="field">
              <label for={`reject-${a.id}`}>Reason</label>
              <textarea id={`reject-${a.id}`} rows={2} value={reason} onInput={(e) => setReason(e.currentTarget.value)} ref={(el) => el?.focus()} />
            </div>
            <div class="buttons">
              <button type="submit" class="danger" disabled={busy}>
                Reject
              </button>
              <button type="button" class="secondary" onClick={() => setMode('view')}>
                Cancel
              </button>
            </div>
          </form>
        )}
      </article>
    </li>
  );
}
