import { Queue, type JobsOptions, type RedisOptions } from 'bullmq';
import type { Action } from '../generated/prisma/client.js';
import { describeAction, renderApprovalEmail, renderOneTimeCodeEmail } from '../mail/approval-email.js';
import { newApprovalToken, newOneTimeCode } from './approval-tokens.js';
import { inTransaction, type EngineDeps } from './deps.js';
import { listInWords, parseEscalationTarget, type EscalationPlan } from './escalation.js';
import { briefError, withRedisTimeout } from './infra-errors.js';
import { commitStep } from './lifecycle/index.js';
import { randomUUID } from 'node:crypto';

/**
 * What an approval job carries. `expire`: the action's approval window has closed (the job reads
 * the deadline again, so a later one is waited for). `escalate`: no decision has come within a
 * rule's escalateAfterMinutes; `to` is the rule's escalateTo as it was when the action was created.
 */
export type ApprovalJobData =
  | { kind: 'expire'; actionId: string; spaceId: string }
  | { kind: 'escalate'; actionId: string; spaceId: string; afterMinutes: number; to: string[] };

export type ApprovalJobKind = ApprovalJobData['kind'];

/** A job to have in the queue, due at `at`. */
export type ApprovalJob = ApprovalJobData & { at: Date };

export const APPROVAL_QUEUE_NAME = 'approvals';

/** One job per action and kind (BullMQ refuses `:` in custom ids): adding it again while it exists is a no-op. */
export function approvalJobId(kind: ApprovalJobKind, actionId: string): string {
  return `${kind}-${actionId}`;
}

/** Job states in which a job will still run (or is running) without help. */
const LIVE_STATES = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);

/** The delayed jobs of PENDING actions: their expiry, and their escalation where a rule names one. */
export interface ApprovalQueue {
  /**
   * Adds each job, due at its `at` (now when past). A job of that action and kind that exists
   * already, in any state, is left as it is. Bounded by `REDIS_COMMAND_TIMEOUT_MS`.
   */
  schedule(jobs: readonly ApprovalJob[]): Promise<void>;
  /** Like schedule, but replaces a job that has finished (completed or failed): for the reconciler. Returns whether it added one. */
  ensure(job: ApprovalJob): Promise<boolean>;
  readonly queue: Queue<ApprovalJobData>;
  close(): Promise<void>;
}

export interface ApprovalQueueOptions {
  connection: RedisOptions;
  prefix: string;
  commandTimeoutMs?: number;
  onError?: (error: Error) => void;
}

export function createApprovalQueue(options: ApprovalQueueOptions): ApprovalQueue {
  const queue = new Queue<ApprovalJobData>(APPROVAL_QUEUE_NAME, {
    connection: options.connection,
    prefix: `${options.prefix}:bull`,
    defaultJobOptions: {
      // A job that fails (PostgreSQL away) is tried again; after the last try the reconciler adds it anew.
      attempts: 5,
      backoff: { type: 'exponential', delay: 2000 },
      // Finished jobs are kept a day, so adding one again (a retried request, the reconciler) collapses into it.
      removeOnComplete: { age: 24 * 3600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  });
  queue.on('error', (error) => options.onError?.(error));
  const bounded = <T>(what: string, run: () => Promise<T>): Promise<T> =>
    options.commandTimeoutMs ? withRedisTimeout(run(), options.commandTimeoutMs, what) : run();
  const entry = ({ at, ...data }: ApprovalJob) => {
    const opts: JobsOptions = { jobId: approvalJobId(data.kind, data.actionId), delay: Math.max(0, at.getTime() - Date.now()) };
    return { name: data.kind, data: data as ApprovalJobData, opts };
  };
  return {
    queue,
    async schedule(jobs) {
      if (!jobs.length) return;
      await bounded('the approval job enqueue', () => queue.addBulk(jobs.map(entry)));
    },
    async ensure(job) {
      return bounded('the approval job check', async () => {
        const existing = await queue.getJob(approvalJobId(job.kind, job.actionId));
        if (existing) {
          if (LIVE_STATES.has(await existing.getState())) return false;
          await existing.remove();
        }
        const { name, data, opts } = entry(job);
        await queue.add(name, data, opts);
        return true;
      });
    },
    close: () => queue.close(),
  };
}

/** The jobs of a newly created PENDING action: its expiry at its deadline, and its escalation if any. */
export function approvalJobsFor(action: Pick<Action, 'id' | 'spaceId' | 'approvalExpiresAt'>, escalation: Pick<EscalationPlan, 'at' | 'afterMinutes' | 'to'> | null): ApprovalJob[] {
  const jobs: ApprovalJob[] = [];
  if (action.approvalExpiresAt) jobs.push({ kind: 'expire', actionId: action.id, spaceId: action.spaceId, at: action.approvalExpiresAt });
  if (escalation) jobs.push({ kind: 'escalate', actionId: action.id, spaceId: action.spaceId, afterMinutes: escalation.afterMinutes, to: escalation.to, at: escalation.at });
  return jobs;
}

/**
 * After a PENDING action's creating statement has committed: queues its approval jobs. Never
 * throws: a lost enqueue (Redis away) is logged, and the approval worker's reconciler adds the
 * missing jobs (the sweep of API processes expires it in any case).
 */
export async function scheduleApprovalJobs(deps: EngineDeps, jobs: readonly ApprovalJob[]): Promise<void> {
  if (!deps.approvalJobs || !jobs.length) return;
  try {
    await deps.approvalJobs.schedule(jobs);
  } catch (error) {
    deps.logger.error({ err: briefError(error), actionId: jobs[0]!.actionId }, 'could not queue the approval jobs; the reconciler will');
  }
}

/** What running an approval job came to; `later`: the deadline moved, run again then. */
export type ApprovalJobOutcome = { kind: 'done'; changed: boolean } | { kind: 'later'; at: Date };

/** Clock slack: a delayed job may fire a little early. */
const EARLY_MS = 50;

/** Runs one approval job. Harmless when the action was decided meanwhile, or when it ran before: the step's guards make it a no-op. */
export async function runApprovalJob(deps: EngineDeps, data: ApprovalJobData): Promise<ApprovalJobOutcome> {
  switch (data.kind) {
    case 'expire':
      return expireAction(deps, data.actionId);
    case 'escalate':
      return { kind: 'done', changed: await escalateAction(deps, data) };
  }
}

/** Moves a PENDING action whose window has closed to EXPIRED (the `expire` step, guarded by the status). */
async function expireAction(deps: EngineDeps, actionId: string): Promise<ApprovalJobOutcome> {
  const action = await deps.db.action.findUnique({ where: { id: actionId }, select: { id: true, spaceId: true, status: true, approvalExpiresAt: true } });
  if (!action || action.status !== 'PENDING' || !action.approvalExpiresAt) return { kind: 'done', changed: false };
  if (action.approvalExpiresAt.getTime() > deps.clock().getTime() + EARLY_MS) return { kind: 'later', at: action.approvalExpiresAt };
  const result = await commitStep(deps, action, { kind: 'expire', expiresAt: action.approvalExpiresAt });
  return { kind: 'done', changed: result.action !== null };
}

/** An escalation mail to send after commit: one link (and code) per recipient. */
interface EscalationMail {
  to: string;
  token: string;
  code: string | null;
}

/**
 * Asks the rule's `escalateTo` as well, when the action is still PENDING and has not been
 * escalated: in one transaction, under the action's row lock, the `escalate` step (status update
 * and `approval.escalated`) and a single-use approval token per recipient (bound to the payload,
 * expiring with the approval window); after commit, one approval mail per recipient. Handles
 * are users of the action's space, mailed at their address; the action's own user (asked already)
 * is not asked again. Returns whether it escalated.
 */
export async function escalateAction(deps: EngineDeps, data: Extract<ApprovalJobData, { kind: 'escalate' }>): Promise<boolean> {
  const outcome = await inTransaction(deps, async (tx, effects) => {
    // The lock every path takes first (decisions, cancel, expiry): no decision can slip in between.
    const [locked] = await tx.$queryRaw<Array<{ status: string }>>`SELECT "status"::text AS "status" FROM "Action" WHERE "id" = ${data.actionId}::uuid FOR UPDATE`;
    if (!locked || locked.status !== 'PENDING') return null;
    // A repeated job (or two at once: the second waits for the lock) does nothing twice.
    const already = await tx.auditEntry.findFirst({ where: { actionId: data.actionId, event: 'approval.escalated' }, select: { id: true } });
    if (already) return null;
    const action = await tx.action.findUniqueOrThrow({
      where: { id: data.actionId },
      include: { requestedBy: { select: { name: true, role: true } }, user: { select: { handle: true, email: true } } },
    });
    const { to, skipped } = await resolveRecipients(tx, action.spaceId, data.to, action.user.email);
    const committed = await commitStep(deps, action, { kind: 'escalate', to, skipped, afterMinutes: data.afterMinutes }, { tx: { client: tx, effects } });
    if (!committed.action) return null;
    const needsCode = deps.types.find(action.type)?.approvalNeedsCode === true;
    const expiresAt = action.approvalExpiresAt ?? new Date(deps.clock().getTime() + deps.config.approvalTtlSeconds * 1000);
    const mails: EscalationMail[] = [];
    const rows = to.map((recipient) => {
      const { token, tokenHash } = newApprovalToken();
      const second = needsCode ? newOneTimeCode() : null;
      mails.push({ to: recipient, token, code: second?.code ?? null });
      return { id: randomUUID(), actionId: action.id, tokenHash, payloadHash: action.payloadHash, codeHash: second?.codeHash ?? null, recipient, expiresAt };
    });
    if (rows.length) await tx.approvalToken.createMany({ data: rows });
    return { action, mails, expiresAt };
  });
  if (!outcome) return false;
  await sendEscalationMails(deps, outcome.action, outcome.mails, outcome.expiresAt, data.afterMinutes);
  return true;
}

/** The addresses to ask: emails as given, handles looked up in the space (skipped when unknown or without an address); never the user's own address twice. */
async function resolveRecipients(
  tx: Parameters<Parameters<typeof inTransaction>[1]>[0],
  spaceId: string,
  entries: readonly string[],
  userEmail: string | null,
): Promise<{ to: string[]; skipped: string[] }> {
  const targets = entries.map(parseEscalationTarget).filter((t) => t !== null);
  const handles = targets.flatMap((t) => (t.kind === 'handle' ? [t.handle] : []));
  const users = handles.length ? await tx.user.findMany({ where: { spaceId, handle: { in: handles } }, select: { handle: true, email: true } }) : [];
  const emailOf = new Map(users.map((u) => [u.handle, u.email]));
  const to: string[] = [];
  const skipped: string[] = [];
  const seen = new Set<string>(userEmail ? [userEmail.toLowerCase()] : []);
  for (const target of targets) {
    const address = target.kind === 'email' ? target.address : emailOf.get(target.handle);
    if (!address) {
      if (target.kind === 'handle') skipped.push(target.handle);
      continue;
    }
    if (seen.has(address.toLowerCase())) continue;
    seen.add(address.toLowerCase());
    to.push(address);
  }
  return { to, skipped };
}

/** After commit: one approval mail (and one-time code mail) per recipient. Failures are logged and said in a status update, never thrown. */
async function sendEscalationMails(
  deps: EngineDeps,
  action: Action & { requestedBy: { name: string; role: string }; user: { handle: string } },
  mails: readonly EscalationMail[],
  expiresAt: Date,
  afterMinutes: number,
): Promise<void> {
  const failed: string[] = [];
  for (const mail of mails) {
    const approveUrl = `${deps.config.baseUrl}/approvals/${mail.token}`;
    try {
      const message = renderApprovalEmail({
        action,
        requestedBy: { name: action.requestedBy.name, role: action.requestedBy.role.toLowerCase() },
        userHandle: action.user.handle,
        expiresAt,
        approveUrl,
        needsCode: mail.code !== null,
        types: deps.types,
        intro: `You are asked as well: nobody has decided on this request in ${afterMinutes} minute${afterMinutes === 1 ? '' : 's'}. Your link decides for you alone.`,
      });
      await deps.mailer.send({ to: mail.to, ...message });
      if (mail.code) {
        const headline = describeAction(action.type, action.payload, { types: deps.types }).headline;
        await deps.mailer.send({ to: mail.to, ...renderOneTimeCodeEmail({ actionSummary: headline, code: mail.code, expiresAt }) });
      }
      if (deps.mailer.mode === 'outbox') deps.logger.info({ actionId: action.id, approveUrl }, 'escalation approval link (no SMTP_URL set; the mail is in the outbox)');
    } catch (error) {
      deps.logger.error({ err: error, actionId: action.id }, 'escalation email could not be sent');
      failed.push(mail.to);
    }
  }
  if (failed.length) {
    await commitStep(deps, action, { kind: 'note', message: `The escalation email to ${listInWords(failed)} could not be sent` }).catch((error: unknown) =>
      deps.logger.warn({ err: briefError(error), actionId: action.id }, 'could not record the failed escalation email'),
    );
  }
}
