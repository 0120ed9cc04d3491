import type { ConsoleActionFieldsFragment } from './generated/graphql';

/** Shared bits: a status badge, a time, and an action's request told for people. */

export function Status({ status }: { status: string }) {
  return <span class={`status status-${status.toLowerCase()}`}>{status.replace(/_/g, ' ')}</span>;
}

export function Time({ at }: { at: string }) {
  const d = new Date(at);
  return <time dateTime={at}>{d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' })}</time>;
}

export function Details({ action }: { action: Pick<ConsoleActionFieldsFragment, 'details'> }) {
  return (
    <dl class="details">
      {action.details.map((d) => (
        <div>
          <dt>{d.label}</dt>
          <dd>
            {d.isList ? (
              <ul>
                {d.value.map((v) => (
                  <li>{v}</li>
                ))}
              </ul>
            ) : d.format === 'inline' ? (
              d.value[0]
            ) : (
              <pre class={d.format === 'json' ? 'mono' : 'text'}>{d.value[0]}</pre>
            )}
          </dd>
        </div>
      ))}
    </dl>
  );
}

interface Change {
  path?: unknown;
  from?: unknown;
  to?: unknown;
}

export function Revisions({ action }: { action: Pick<ConsoleActionFieldsFragment, 'revision' | 'revisions'> }) {
  if (action.revisions.length <= 1) return <p class="muted">Revision {action.revision} (as the agent sent it).</p>;
  return (
    <details class="revisions">
      <summary>
        Revision {action.revision} of {action.revisions.length}: edited by an approver
      </summary>
      <ol>
        {action.revisions.map((r) => (
          <li>
            Revision {r.revision} by {r.author}, <Time at={r.createdAt} />
            {Array.isArray(r.diff) && (
              <ul class="diff">
                {(r.diff as Change[]).map((c) => (
                  <li>
                    <code>{Array.isArray(c.path) ? c.path.join('.') : String(c.path)}</code>: <del>{JSON.stringify(c.from)}</del> →{' '}
                    <ins>{JSON.stringify(c.to)}</ins>
                  </li>
                ))}
              </ul>
            )}
          </li>
        ))}
      </ol>
    </details>
  );
}

export function Approvals({ action }: { action: Pick<ConsoleActionFieldsFragment, 'approvalsRequired' | 'decisions' | 'revision'> }) {
  const current = action.decisions.filter((d) => d.revision === action.revision && d.decision.toUpperCase().startsWith('APPROV'));
  const left = Math.max(0, action.approvalsRequired - current.length);
  return (
    <p class="approvals">
      {left > 0 ? `${left} of ${action.approvalsRequired} approval${action.approvalsRequired === 1 ? '' : 's'} still needed` : 'Approvals complete'}
      {action.decisions.length > 0 &&
        ` · ${action.decisions.length} decision${action.decisions.length === 1 ? '' : 's'}: ${action.decisions.map((d) => `${d.decision.toLowerCase()} (revision ${d.revision}${d.comment ? `, “${d.comment}”` : ''})`).join(', ')}`}
    </p>
  );
}
