import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, closeSubscriptions, request, storedKey, storeKey } from './api';
import { MeQuery } from './ops';
import type { ConsoleMeQuery } from './generated/graphql';
import { Inbox } from './inbox';
import { ActionsPage } from './timeline';
import { TasksPage } from './tasks';
import { AuditPage } from './audit';
import { OverviewPage } from './overview';
import { RulesPage } from './rules';
import { HandlerConfigsPage } from './handler-configs';
import { ApiKeysPage } from './api-keys';
import { WebhooksPage } from './webhooks';
import { StandingApprovalsPage } from './standing-approvals';
import './styles.css';

type Me = ConsoleMeQuery['me'];
type Page = 'overview' | 'inbox' | 'actions' | 'tasks' | 'audit' | 'rules' | 'handlers' | 'keys' | 'webhooks' | 'standing';

const ADMIN: Me['role'][] = ['ADMIN'];
/** Every page, in the order of the navigation; `admin` pages form their own group. */
const PAGES: Record<Page, { label: string; roles: Me['role'][]; admin?: boolean }> = {
  overview: { label: 'Overview', roles: ['APPROVER', 'OPERATOR', 'ANALYST', 'ADMIN'] },
  inbox: { label: 'Inbox', roles: ['APPROVER', 'ADMIN'] },
  tasks: { label: 'Manual tasks', roles: ['OPERATOR', 'ADMIN'] },
  audit: { label: 'Audit', roles: ['ANALYST', 'ADMIN'] },
  actions: { label: 'Actions', roles: ['APPROVER', 'OPERATOR', 'ANALYST', 'ADMIN', 'AGENT'] },
  rules: { label: 'Safety rules', roles: ADMIN, admin: true },
  handlers: { label: 'Handlers', roles: ADMIN, admin: true },
  keys: { label: 'API keys', roles: ADMIN, admin: true },
  webhooks: { label: 'Webhooks', roles: ADMIN, admin: true },
  standing: { label: 'Standing approvals', roles: ADMIN, admin: true },
};

/** Where each role lands after signing in. */
function firstPage(role: Me['role']): Page {
  switch (role) {
    case 'ADMIN':
    case 'ANALYST':
      return 'overview';
    case 'OPERATOR':
      return 'tasks';
    case 'APPROVER':
      return 'inbox';
    case 'AGENT':
      return 'actions';
  }
}

function SignIn({ onSignedIn }: { onSignedIn: (key: string, me: Me) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit(e: Event) {
    e.preventDefault();
    const k = key.trim();
    if (!k) return setError('Enter an API key.');
    setBusy(true);
    setError(null);
    try {
      const { me } = await request(k, MeQuery);
      onSignedIn(k, me);
    } catch (err) {
      setError(err instanceof ApiError && /key/i.test(err.message) ? `This key was not accepted: ${err.message}` : String((err as Error).message));
    } finally {
      setBusy(false);
    }
  }
  return (
    <main class="signin">
      <h1>Action Engine</h1>
      <p>Sign in with your API key. It is kept in this tab only and forgotten when you sign out or close the tab.</p>
      <form onSubmit={submit}>
        <label for="api-key">API key</label>
        <input id="api-key" type="password" autoComplete="off" spellcheck={false} value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}

function App() {
  const [session, setSession] = useState<{ key: string; me: Me } | null>(null);
  const [checking, setChecking] = useState(() => storedKey() !== null);
  const [page, setPage] = useState<Page>('actions');

  useEffect(() => {
    const key = storedKey();
    if (!key) return;
    request(key, MeQuery)
      // Only if the key is still there: signing out (or clearing the tab's storage) while this
      // check was under way must not bring it back.
      .then(({ me }) => {
        if (storedKey() === key) start(key, me);
      })
      .catch(() => {
        if (storedKey() === key) storeKey(null);
      })
      .finally(() => setChecking(false));
  }, []);

  function start(key: string, me: Me) {
    storeKey(key);
    setSession({ key, me });
    setPage(firstPage(me.role));
  }
  function signOut() {
    storeKey(null);
    closeSubscriptions();
    setSession(null);
  }

  if (checking) return <p class="loading">Loading…</p>;
  if (!session) return <SignIn onSignedIn={start} />;
  const { key, me } = session;
  const pages = (Object.keys(PAGES) as Page[]).filter((p) => PAGES[p].roles.includes(me.role));
  const tab = (p: Page) => (
    <button type="button" class="tab" aria-current={p === page ? 'page' : undefined} onClick={() => setPage(p)}>
      {PAGES[p].label}
    </button>
  );
  const adminPages = pages.filter((p) => PAGES[p].admin);
  return (
    <>
      <header class="top">
        <h1 class="brand">Action Engine</h1>
        <nav aria-label="Sections">
          {pages.filter((p) => !PAGES[p].admin).map(tab)}
          {adminPages.length > 0 && (
            <span class="tab-group" role="group" aria-label="Administration">
              {adminPages.map(tab)}
            </span>
          )}
        </nav>
        <span class="who">
          {me.role.toLowerCase()}
          {me.user ? ` · ${me.user.handle}` : ''}
        </span>
        <button type="button" class="secondary" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main class="content">
        {page === 'inbox' && <Inbox apiKey={key} />}
        {page === 'actions' && <ActionsPage apiKey={key} />}
        {page === 'tasks' && <TasksPage apiKey={key} />}
        {page === 'audit' && <AuditPage apiKey={key} />}
        {page === 'overview' && <OverviewPage apiKey={key} role={me.role} />}
        {page === 'rules' && <RulesPage apiKey={key} />}
        {page === 'handlers' && <HandlerConfigsPage apiKey={key} />}
        {page === 'keys' && <ApiKeysPage apiKey={key} principalId={me.principalId} />}
        {page === 'webhooks' && <WebhooksPage apiKey={key} />}
        {page === 'standing' && <StandingApprovalsPage apiKey={key} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
