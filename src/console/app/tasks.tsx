import { useEffect, useState } from 'preact/hooks';
import { loadPages, request, subscribe } from './api';
import { ActionEventsSubscription, CompleteTaskMutation, ManualTasksQuery } from './ops';
import type { ConsoleManualTasksQuery } from './generated/graphql';
import { Status, Time } from './view';

type Task = ConsoleManualTasksQuery['manualTasks']['edges'][number]['node'];
/** Open tasks shown at first, and added by each "Show more". */
const PAGE = 50;

/** Operators: the open manual tasks, with their instructions and a form to report each one done. */
export function TasksPage({ apiKey }: { apiKey: string }) {
  const [tasks, setTasks] = useState<Task[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string[]>([]);
  const [pages, setPages] = useState(1);
  const [more, setMore] = useState(false);

  useEffect(() => {
    const load = () =>
      loadPages(pages, async (after) => (await request(apiKey, ManualTasksQuery, { first: PAGE, after })).manualTasks)
        .then(({ nodes, more: next }) => {
          setTasks(nodes);
          setMore(next);
        })
        .catch((e: Error) => setError(e.message));
    // A task opens when an action starts executing by hand: reload on every execution event.
    const stop = subscribe(apiKey, ActionEventsSubscription, {}, ({ actionEvents: e }) => {
      if (e.status === 'EXECUTING' || e.status === 'COMPLETED' || e.status === 'FAILED' || e.status === 'CANCELLED') void load();
    });
    void load();
    return stop;
  }, [apiKey, pages]);

  return (
    <section aria-labelledby="tasks-title">
      <h2 id="tasks-title">Manual tasks {tasks && <span class="count">({tasks.length}{more ? '+' : ''} open)</span>}</h2>
      {error && <p class="error" role="alert">{error}</p>}
      {done.length > 0 && (
        <p class="ok" role="status">
          Completed: {done.join(', ')}
        </p>
      )}
      {tasks === null ? (
        <p>Loading…</p>
      ) : tasks.length === 0 ? (
        <p class="empty">No open tasks.</p>
      ) : (
        <ul class="cards">
          {tasks.map((t) => (
            <TaskItem
              key={t.id}
              apiKey={apiKey}
              task={t}
              onDone={() => {
                setDone((d) => [t.action.headline, ...d].slice(0, 5));
                setTasks((list) => (list ?? []).filter((x) => x.id !== t.id));
              }}
            />
          ))}
        </ul>
      )}
      {more && (
        <button type="button" class="secondary" onClick={() => setPages((n) => n + 1)}>
          Show more
        </button>
      )}
    </section>
  );
}

function TaskItem({ apiKey, task, onDone }: { apiKey: string; task: Task; onDone: () => void }) {
  const [reference, setReference] = useState('');
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const hid = `task-${task.id}`;

  async function complete(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const outcome: Record<string, string> = {};
      if (reference.trim()) outcome.reference = reference.trim();
      if (note.trim()) outcome.note = note.trim();
      const r = (await request(apiKey, CompleteTaskMutation, { id: task.id, outcome })).completeManualTask;
      if (r.errors.length) setError(r.errors.map((x) => x.message).join(' '));
      else onDone();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <li class="card" aria-labelledby={hid}>
      <article aria-labelledby={hid}>
        <h3 id={hid}>{task.action.headline}</h3>
        <p class="meta">
          <Status status={task.action.status} /> <code>{task.action.type}</code> · opened <Time at={task.createdAt} />
        </p>
        <h4>Instructions</h4>
        <pre class="text instructions">{task.instructions}</pre>
        <form onSubmit={complete}>
          <div class="field">
            <label for={`${hid}-ref`}>Reference (order number, ticket…)</label>
            <input id={`${hid}-ref`} value={reference} onInput={(e) => setReference(e.currentTarget.value)} />
          </div>
          <div class="field">
            <label for={`${hid}-note`}>Outcome</label>
            <textarea id={`${hid}-note`} rows={2} value={note} onInput={(e) => setNote(e.currentTarget.value)} />
          </div>
          {error && <p class="error" role="alert">{error}</p>}
          <div class="buttons">
            <button type="submit" disabled={busy}>
              Complete
            </button>
          </div>
        </form>
      </article>
    </li>
  );
}
