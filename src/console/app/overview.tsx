import { useEffect, useRef, useState } from 'preact/hooks';
import { request, subscribe } from './api';
import { ActionEventsSubscription, AuditVerificationQuery, StatsQuery } from './ops';
import type { ConsoleAuditVerificationQuery, ConsoleStatsQuery, Role, StatsBucket } from './generated/graphql';

type Stats = ConsoleStatsQuery['stats'];
type Charts = typeof import('./charts');

const WINDOWS = {
  '24h': { label: '24 h', long: 'the last 24 hours', ms: 24 * 3600_000, bucket: 'HOUR' as StatsBucket },
  '7d': { label: '7 d', long: 'the last 7 days', ms: 7 * 86_400_000, bucket: 'DAY' as StatsBucket },
  '30d': { label: '30 d', long: 'the last 30 days', ms: 30 * 86_400_000, bucket: 'DAY' as StatsBucket },
};
type Window = keyof typeof WINDOWS;

const STATUS_ORDER = ['PENDING', 'APPROVED', 'EXECUTING', 'COMPLETED', 'FAILED', 'REJECTED', 'BLOCKED', 'CANCELLED', 'EXPIRED', 'ROLLED_BACK'];
const STATUS_COLOR: Record<string, string> = {
  PENDING: '#e0a100',
  APPROVED: '#6c9be8',
  EXECUTING: '#1f5fbf',
  COMPLETED: '#1b8a45',
  FAILED: '#c0392b',
  REJECTED: '#8e1b12',
  BLOCKED: '#6b3fa0',
  CANCELLED: '#8a93a3',
  EXPIRED: '#c3c8d1',
  ROLLED_BACK: '#138a8a',
};
const words = (s: string) => s.toLowerCase().replace(/_/g, ' ');
const pct = (f: number) => `${Math.round(f * 100)} %`;
const STEP: Record<StatsBucket, number> = { MINUTE: 60_000, HOUR: 3600_000, DAY: 86_400_000 };

/** The bucket starts from `from` (truncated, UTC, as the server buckets) up to `to`. */
function bucketStarts(from: string, to: string, bucket: StatsBucket): number[] {
  const step = STEP[bucket];
  const out: number[] = [];
  for (let t = Math.floor(Date.parse(from) / step) * step; t < Date.parse(to) && out.length < 2000; t += step) out.push(t);
  return out;
}

function bucketLabel(t: number, bucket: StatsBucket): string {
  const d = new Date(t);
  // Days are the server's, in UTC: named in UTC, or a day west of Greenwich would show as the one before.
  if (bucket === 'DAY') return d.toLocaleDateString(undefined, { day: 'numeric', month: 'short', timeZone: 'UTC' });
  return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/**
 * Everyone who may read the space: what happened in a window (24 h, 7 d, 30 d) — actions over
 * time by status, by type, how long approvals took, how handlers fared — and the queues now.
 * Every chart has its numbers in a table next to it; the page reloads on the space's events.
 */
export function OverviewPage({ apiKey, role }: { apiKey: string; role: Role }) {
  const [win, setWin] = useState<Window>('24h');
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [charts, setCharts] = useState<Charts | null>(null);
  const [type, setType] = useState('');
  const [updated, setUpdated] = useState<Date | null>(null);
  const reload = useRef<() => void>(() => {});

  useEffect(() => {
    import('./charts').then(setCharts, (e: Error) => setError(`The charts could not be loaded: ${e.message}`));
  }, []);

  useEffect(() => {
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = () => {
      const to = new Date();
      const from = new Date(to.getTime() - WINDOWS[win].ms);
      request(apiKey, StatsQuery, { from: from.toISOString(), to: to.toISOString(), bucket: WINDOWS[win].bucket })
        .then((r) => {
          if (cancelled) return;
          setStats(r.stats);
          setError(null);
          setUpdated(new Date());
        })
        .catch((e: Error) => !cancelled && setError(e.message));
    };
    reload.current = load;
    load();
    // Live: any status change in the space reloads the numbers (at most once a second).
    const stop = subscribe(apiKey, ActionEventsSubscription, {}, () => {
      clearTimeout(timer);
      timer = setTimeout(load, 1000);
    });
    return () => {
      cancelled = true;
      clearTimeout(timer);
      stop();
    };
  }, [apiKey, win]);

  const w = WINDOWS[win];
  return (
    <>
      <section>
        <div class="section-head">
          <h2 id="overview-title">Overview</h2>
          <fieldset class="segmented">
            <legend class="sr-only">Window</legend>
            {(Object.keys(WINDOWS) as Window[]).map((k) => (
              <label class={k === win ? 'on' : ''}>
                <input type="radio" name="window" value={k} checked={k === win} onChange={() => setWin(k)} />
                {WINDOWS[k].label}
              </label>
            ))}
          </fieldset>
        </div>
        <p class="muted small" aria-live="polite">
          {stats ? `Actions created in ${w.long}; queues as of ${updated?.toLocaleTimeString() ?? 'now'}. Updates live.` : 'Loading…'}
        </p>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </section>
      {(role === 'ANALYST' || role === 'ADMIN') && <ChainStatus apiKey={apiKey} />}
      {stats && (
        <>
          <Queue stats={stats} />
          <OverTime stats={stats} charts={charts} type={type} setType={setType} window={w.long} />
          <ByType stats={stats} charts={charts} />
          <ApprovalWait stats={stats} charts={charts} />
          <Handlers stats={stats} charts={charts} />
        </>
      )}
    </>
  );
}

/** Analysts and admins: whether the audit trail verifies, in one line (the Audit page has the detail). */
function ChainStatus({ apiKey }: { apiKey: string }) {
  const [v, setV] = useState<ConsoleAuditVerificationQuery['auditVerification'] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    request(apiKey, AuditVerificationQuery)
      .then((r) => setV(r.auditVerification))
      .catch((e: Error) => setError(e.message));
  }, [apiKey]);
  return (
    <section>
      <h3 id="chain-title" class="sr-only">
        Audit chain
      </h3>
      <p aria-live="polite" class={`verdict small-verdict ${v ? (v.ok ? 'ok' : 'bad') : ''}`}>
        {error
          ? `Audit chain: ${error}`
          : !v
            ? 'Verifying the audit chain…'
            : v.ok
              ? `Chain verified: ${v.entriesChecked} entries, ${v.checkpoints} signed checkpoints (${v.unsealed} entries not yet sealed).`
              : `Chain does not verify: ${v.problem}`}
      </p>
    </section>
  );
}

function Queue({ stats }: { stats: Stats }) {
  const q = stats.queue;
  const tiles: [string, number, string?][] = [
    ['Waiting for approval', q.pendingApproval],
    ['Queued to run', q.queued, q.scheduled ? `${q.scheduled} scheduled later` : undefined],
    ['Executing', q.executing],
    ['Waiting on a provider', q.waitingOnProvider],
    ['Waiting on an operator', q.waitingOnOperator],
    ['Open manual tasks', q.openManualTasks],
  ];
  return (
    <section>
      <h3 id="queue-title">Queues now</h3>
      <dl class="tiles">
        {tiles.map(([label, n, note]) => (
          <div class="tile">
            <dt>{label}</dt>
            <dd>
              {n}
              {note && <span class="tile-note">{note}</span>}
            </dd>
          </div>
        ))}
      </dl>
    </section>
  );
}

function OverTime({ stats, charts, type, setType, window }: { stats: Stats; charts: Charts | null; type: string; setType: (t: string) => void; window: string }) {
  const starts = bucketStarts(stats.from, stats.to, stats.bucket);
  const index = new Map(starts.map((t, i) => [t, i]));
  const points = stats.series.filter((p) => !type || p.type === type);
  const statuses = STATUS_ORDER.filter((s) => points.some((p) => p.status === s));
  const grid = new Map(statuses.map((s) => [s, starts.map(() => 0)]));
  for (const p of points) {
    const i = index.get(Date.parse(p.bucketStart));
    if (i !== undefined) grid.get(p.status)![i]! += p.count;
  }
  const total = points.reduce((n, p) => n + p.count, 0);
  const byStatus = statuses.map((s) => [s, grid.get(s)!.reduce((a, b) => a + b, 0)] as const);
  const summary =
    total === 0
      ? `No ${type ? `${type} ` : ''}actions were created in ${window}.`
      : `${total} ${type ? `${type} ` : ''}action${total === 1 ? '' : 's'} created in ${window}: ${byStatus.map(([s, n]) => `${n} ${words(s)}`).join(', ')}.`;
  const rows = starts.map((t, i) => ({ t, counts: statuses.map((s) => grid.get(s)![i]!) })).filter((r) => r.counts.some((n) => n > 0));
  return (
    <section class="card chart-card">
      <div class="section-head">
        <h3 id="time-title">Actions over time, by status</h3>
        <div class="field inline">
          <label for="overview-type">Action type</label>
          <select id="overview-type" value={type} onChange={(e) => setType(e.currentTarget.value)}>
            <option value="">All types</option>
            {stats.byType.map((t) => (
              <option value={t.type}>{t.type}</option>
            ))}
          </select>
        </div>
      </div>
      <p class="summary" id="time-summary">
        {summary}
      </p>
      {charts && total > 0 && (
        <charts.BarChart
          stacked
          labels={starts.map((t) => bucketLabel(t, stats.bucket))}
          series={statuses.map((s) => ({ label: words(s), data: grid.get(s)!, color: STATUS_COLOR[s] ?? '#888' }))}
          summary={`Bar chart: ${summary}`}
          describedBy="time-table"
        />
      )}
      {rows.length > 0 && (
        <details>
          <summary>Numbers per {stats.bucket.toLowerCase()}</summary>
          <div class="table-wrap" tabIndex={0} role="group" aria-label="Table (scrolls sideways on narrow screens)">
            <table id="time-table">
              <caption class="sr-only">Actions created per {stats.bucket.toLowerCase()}, by current status</caption>
              <thead>
                <tr>
                  <th scope="col">{stats.bucket === 'DAY' ? 'Day (UTC)' : 'Hour from'}</th>
                  {statuses.map((s) => (
                    <th scope="col">{words(s)}</th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {rows.map((r) => (
                  <tr>
                    <th scope="row">{new Date(r.t).toLocaleString(undefined, stats.bucket === 'DAY' ? { dateStyle: 'medium', timeZone: 'UTC' } : { dateStyle: 'short', timeStyle: 'short' })}</th>
                    {r.counts.map((n) => (
                      <td>{n}</td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </details>
      )}
    </section>
  );
}

function ByType({ stats, charts }: { stats: Stats; charts: Charts | null }) {
  if (!stats.byType.length) return null;
  const list = [...stats.byType].sort((a, b) => b.count - a.count);
  const summary = `By type: ${list.map((t) => `${t.count} ${t.type}`).join(', ')}.`;
  return (
    <section class="card chart-card">
      <h3 id="type-title">Actions by type</h3>
      <p class="summary">{summary}</p>
      {charts && (
        <charts.BarChart
          horizontal
          labels={list.map((t) => t.type)}
          series={[{ label: 'actions', data: list.map((t) => t.count), color: '#1f5fbf' }]}
          summary={`Bar chart: ${summary}`}
          describedBy="type-table"
          height={Math.max(120, 36 * list.length + 40)}
        />
      )}
      <div class="table-wrap" tabIndex={0} role="group" aria-label="Table (scrolls sideways on narrow screens)">
        <table id="type-table" class="compact-table">
          <caption class="sr-only">Actions created, by type</caption>
          <thead>
            <tr>
              <th scope="col">Type</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {list.map((t) => (
              <tr>
                <th scope="row">{t.type}</th>
                <td>{t.count}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function ApprovalWait({ stats, charts }: { stats: Stats; charts: Charts | null }) {
  const a = stats.approvalWait;
  const d = charts?.duration ?? ((s: number | null | undefined) => (s == null ? '—' : `${Math.round(s)} s`));
  const summary =
    a.count === 0
      ? 'No approval was decided in this window.'
      : `${a.count} decision${a.count === 1 ? '' : 's'}: half within ${d(a.p50Seconds)}, nine in ten within ${d(a.p90Seconds)}, the longest ${d(a.maxSeconds)}.`;
  return (
    <section class="card chart-card">
      <h3 id="wait-title">Time waiting for approval</h3>
      <p class="summary">{summary}</p>
      {charts && a.count > 0 && (
        <charts.BarChart
          horizontal
          seconds
          labels={['median (p50)', '90th percentile', 'longest']}
          series={[{ label: 'wait', data: [a.p50Seconds ?? 0, a.p90Seconds ?? 0, a.maxSeconds ?? 0], color: '#e0a100' }]}
          summary={`Bar chart: ${summary}`}
          height={150}
        />
      )}
    </section>
  );
}

function Handlers({ stats, charts }: { stats: Stats; charts: Charts | null }) {
  const list = stats.handlers;
  return (
    <section class="card chart-card">
      <h3 id="handlers-chart-title">Handlers: success and fallback</h3>
      {list.length === 0 ? (
        <p class="summary">No handler ran in this window.</p>
      ) : (
        <>
          <p class="summary">{list.map((h) => `${h.handler}: ${pct(h.successRate)} succeeded, ${pct(h.fallbackRate)} fell back (${h.attempts} attempts)`).join('; ')}.</p>
          {charts && (
            <charts.BarChart
              horizontal
              percent
              // Two lines (create_document / .filesystem) so long names fit a phone's width.
              labels={list.map((h) => h.handler.replace(/\.(?=[^.]+$)/, '\n.'))}
              series={[
                { label: 'success rate', data: list.map((h) => h.successRate), color: '#1b8a45' },
                { label: 'fallback rate', data: list.map((h) => h.fallbackRate), color: '#e0a100' },
              ]}
              summary="Bar chart of each handler's success and fallback rates; the table below has the numbers."
              describedBy="handlers-table"
              height={Math.max(140, 52 * list.length + 60)}
            />
          )}
          <div class="table-wrap" tabIndex={0} role="group" aria-label="Table (scrolls sideways on narrow screens)">
            <table id="handlers-table">
              <caption class="sr-only">Executions per handler</caption>
              <thead>
                <tr>
                  <th scope="col">Handler</th>
                  <th scope="col">Attempts</th>
                  <th scope="col">Succeeded</th>
                  <th scope="col">Failed</th>
                  <th scope="col">Fell back</th>
                  <th scope="col">Unfinished</th>
                  <th scope="col">Success rate</th>
                  <th scope="col">Fallback rate</th>
                </tr>
              </thead>
              <tbody>
                {list.map((h) => (
                  <tr>
                    <th scope="row">{h.handler}</th>
                    <td>{h.attempts}</td>
                    <td>{h.succeeded}</td>
                    <td>{h.failed}</td>
                    <td>{h.fellBack}</td>
                    <td>{h.unfinished}</td>
                    <td>{pct(h.successRate)}</td>
                    <td>{pct(h.fallbackRate)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
