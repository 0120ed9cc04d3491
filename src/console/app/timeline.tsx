import { useEffect, useState } from 'preact/hooks';
import { loadPages, request, subscribe } from './api';
import { ActionStatusSubscription, ActionTimelineQuery, RecentActionsQuery } from './ops';
import type { ConsoleActionTimelineQuery, ConsoleRecentActionsQuery } from './generated/graphql';
import { Approvals, Details, Revisions, Status, Time } from './view';

type Full = NonNullable<ConsoleActionTimelineQuery['action']>;

/**
 * One action's live timeline: its status updates, executions (handler, attempt) and receipts
 * (signed or not), reloaded on every event of `actionStatus(actionId)`.
 */
export function Timeline({ apiKey, id }: { apiKey: string; id: string }) {
  const [action, setAction] = useState<Full | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let cancelled = false;
    let loading: Promise<void> | null = null;
    let again = false;
    const load = () => {
      if (loading) {
        again = true;
        return;
      }
      loading = request(apiKey, ActionTimelineQuery, { id })
        .then((r) => {
          if (!cancelled) setAction(r.action ?? null);
        })
        .catch((e: Error) => {
          if (!cancelled) setError(e.message);
        })
        .finally(() => {
          loading = null;
          if (again && !cancelled) {
            again = false;
            load();
          }
        });
    };
    const stop = subscribe(apiKey, ActionStatusSubscription, { actionId: id }, () => load(), (m) => setError(`Live updates stopped: ${m}`));
    load();
    return () => {
      cancelled = true;
      stop();
    };
  }, [apiKey, id]);

  if (!action) return <p>{error ?? 'Loading…'}</p>;
  const titleId = `timeline-${id}`;
  return (
    <article class="card timeline" aria-labelledby={titleId}>
      <h3 id={titleId}>{action.headline}</h3>
      <p class="meta">
        <span aria-live="polite">
          Status: <Status status={action.status} />
        </span>{' '}
        <code>{action.type}</code> · <code class="id">{action.id}</code>
      </p>
      {action.error && <p class="error">{action.error}</p>}
      <Details action={action} />
      <Revisions action={action} />
      <Approvals action={action} />
      <h4>Timeline</h4>
      <ol class="events" aria-label="Status updates">
        {action.statusUpdates.map((u) => (
          <li>
            <Status status={u.status} /> <Time at={u.timestamp} />
            {u.message && <span class="message"> — {u.message}</span>}
          </li>
        ))}
      </ol>
      {action.executions.length > 0 && (
        <>
          <h4>Executions</h4>
          <ul class="plain">
            {action.executions.map((x) => (
              <li>
                <strong>{x.handler}</strong> ({x.kind.toLowerCase()}), attempt {x.attempt}: {x.status.toLowerCase()}
                {x.externalRef && <> · ref <code>{x.externalRef}</code></>}
                {x.error && <span class="error"> — {x.error}</span>}
              </li>
            ))}
          </ul>
        </>
      )}
      {action.receipts.length > 0 && (
        <>
          <h4>Receipts</h4>
          <ul class="plain" aria-label="Receipts">
            {action.receipts.map((r) => (
              <li>
                Receipt <strong>{r.receiptNumber}</strong> from {r.provider} via {r.handler}
                {r.externalRef && <> · ref <code>{r.externalRef}</code></>} ·{' '}
                {r.signature ? <span class="ok">signed (key {r.keyId})</span> : <span class="warn">not signed</span>} · <Time at={r.createdAt} />
              </li>
            ))}
          </ul>
        </>
      )}
    </article>
  );
}

type Row = ConsoleRecentActionsQuery['actions']['edges'][number]['node'];
/** Actions listed at first, and added by each "Show more". */
const PAGE = 30;
const STATUSES = ['PENDING', 'APPROVED', 'EXECUTING', 'COMPLETED', 'FAILED', 'REJECTED', 'BLOCKED', 'CANCELLED', 'EXPIRED', 'ROLLED_BACK'];

/** Everyone: the latest actions (filter by status and type), and the timeline of the one picked. */
export function ActionsPage({ apiKey }: { apiKey: string }) {
  const [rows, setRows] = useState<Row[] | null>(null);
  const [status, setStatus] = useState('');
  const [type, setType] = useState('');
  const [search, setSearch] = useState('');
  const [open, setOpen] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [pages, setPages] = useState(1);
  const [more, setMore] = useState(false);

  useEffect(() => {
    const filter = { ...(status ? { status: [status as never] } : {}), ...(type.trim() ? { type: [type.trim()] } : {}) };
    loadPages(pages, async (after) => (await request(apiKey, RecentActionsQuery, { filter, first: PAGE, after })).actions)
      .then(({ nodes, more: next }) => {
        setRows(nodes);
        setMore(next);
      })
      .catch((e: Error) => setError(e.message));
  }, [apiKey, status, type, pages]);

  const shown = (rows ?? []).filter((r) => !search || `${r.headline} ${r.id}`.toLowerCase().includes(search.toLowerCase()));
  return (
    <>
      <section aria-labelledby="actions-title">
        <h2 id="actions-title">Actions</h2>
        <form class="filters" onSubmit={(e) => e.preventDefault()}>
          <div class="field">
            <label for="f-status">Status</label>
            <select id="f-status" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
              <option value="">Any</option>
              {STATUSES.map((s) => (
                <option value={s}>{s}</option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="f-type">Type</label>
            <input id="f-type" value={type} onChange={(e) => setType(e.currentTarget.value)} placeholder="e.g. send_email" />
          </div>
          <div class="field">
            <label for="f-search">Search the actions listed</label>
            <input id="f-search" type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
          </div>
        </form>
        {error && <p class="error" role="alert">{error}</p>}
        {rows === null ? (
          <p>Loading…</p>
        ) : shown.length === 0 ? (
          <p class="empty">No actions.</p>
        ) : (
          <ul class="rows">
            {shown.map((r) => (
              <li>
                <button type="button" class="row" aria-expanded={open === r.id} onClick={() => setOpen(open === r.id ? null : r.id)}>
                  <span class="headline">{r.headline}</span>
                  <span class="row-meta">
                    <Status status={r.status} /> <Time at={r.updatedAt} />
                  </span>
                </button>
                {open === r.id && <Timeline apiKey={apiKey} id={r.id} />}
              </li>
            ))}
          </ul>
        )}
        {more && (
          <button type="button" class="secondary" onClick={() => setPages((n) => n + 1)}>
            Show more
          </button>
        )}
      </section>
    </>
  );
}
