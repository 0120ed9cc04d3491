import { useEffect, useState } from 'preact/hooks';
import { request } from './api';
import { AuditQuery, AuditVerificationQuery } from './ops';
import type { ConsoleAuditQuery, ConsoleAuditVerificationQuery } from './generated/graphql';
import { Time } from './view';

type Entry = ConsoleAuditQuery['auditLog']['edges'][number]['node'];
type Verification = ConsoleAuditVerificationQuery['auditVerification'];

/** Analysts: whether the audit trail verifies, and the latest entries, filtered by event, actor or action. */
export function AuditPage({ apiKey }: { apiKey: string }) {
  const [verification, setVerification] = useState<Verification | null>(null);
  const [checking, setChecking] = useState(false);
  const [entries, setEntries] = useState<Entry[] | null>(null);
  const [event, setEvent] = useState('');
  const [actor, setActor] = useState('');
  const [actionId, setActionId] = useState('');
  const [error, setError] = useState<string | null>(null);
  // The cursor of the oldest entry shown, while older ones exist ("Older entries").
  const [older, setOlder] = useState<string | null>(null);

  const verify = () => {
    setChecking(true);
    request(apiKey, AuditVerificationQuery)
      .then((r) => setVerification(r.auditVerification))
      .catch((e: Error) => setError(e.message))
      .finally(() => setChecking(false));
  };
  const load = (before: string | null = null) => {
    const filter = { ...(event.trim() ? { event: [event.trim()] } : {}), ...(actor.trim() ? { actor: actor.trim() } : {}) };
    request(apiKey, AuditQuery, { first: 50, before, filter, actionId: actionId.trim() || null })
      .then((r) => {
        const page = r.auditLog.edges.map((e) => e.node).reverse();
        setEntries((shown) => (before ? [...(shown ?? []), ...page] : page));
        setOlder(r.auditLog.pageInfo.hasPreviousPage ? (r.auditLog.pageInfo.startCursor ?? null) : null);
      })
      .catch((e: Error) => setError(e.message));
  };
  useEffect(() => {
    verify();
    load();
  }, [apiKey]);

  return (
    <>
      <section aria-labelledby="verify-title">
        <h2 id="verify-title">Audit chain</h2>
        <div aria-live="polite">
          {verification === null ? (
            <p>{checking ? 'Verifying…' : ''}</p>
          ) : verification.ok ? (
            <p class="verdict ok">
              Chain verified: {verification.entriesChecked} entries, {verification.checkpoints} signed checkpoints ({verification.unsealed} entries not yet sealed).
            </p>
          ) : (
            <p class="verdict bad">Chain does not verify: {verification.problem}</p>
          )}
        </div>
        <button type="button" class="secondary" disabled={checking} onClick={verify}>
          Verify again
        </button>
      </section>
      <section aria-labelledby="log-title">
        <h2 id="log-title">Audit log</h2>
        <form
          class="filters"
          onSubmit={(e) => {
            e.preventDefault();
            load();
          }}
        >
          <div class="field">
            <label for="a-event">Event</label>
            <input id="a-event" value={event} onInput={(e) => setEvent(e.currentTarget.value)} placeholder="e.g. action.approved" />
          </div>
          <div class="field">
            <label for="a-actor">Actor</label>
            <input id="a-actor" value={actor} onInput={(e) => setActor(e.currentTarget.value)} />
          </div>
          <div class="field">
            <label for="a-action">Action id</label>
            <input id="a-action" value={actionId} onInput={(e) => setActionId(e.currentTarget.value)} />
          </div>
          <button type="submit">Filter</button>
        </form>
        {error && <p class="error" role="alert">{error}</p>}
        {entries === null ? (
          <p>Loading…</p>
        ) : entries.length === 0 ? (
          <p class="empty">No entries.</p>
        ) : (
          <ol class="audit">
            {entries.map((e) => (
              <li>
                <div>
                  <strong>{e.event}</strong> by <code>{e.actor}</code> · <Time at={e.createdAt} />
                </div>
                <div class="muted small">
                  chain <code>{e.chain}</code> #{e.chainSeq} · hash <code>{e.hash.slice(0, 12)}…</code>
                </div>
              </li>
            ))}
          </ol>
        )}
        {older && (
          <button type="button" class="secondary" onClick={() => load(older)}>
            Older entries
          </button>
        )}
      </section>
    </>
  );
}
