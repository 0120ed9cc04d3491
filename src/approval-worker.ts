import { DelayedError, type Job } from 'bullmq';
import type { App } from './app.js';
import { APPROVAL_QUEUE_NAME, runApprovalJob, type ApprovalJob, type ApprovalJobData } from './engine/approval-jobs.js';
import { briefError } from './engine/infra-errors.js';
import { closeQueueWorker, createQueueWorker, everyReconcileRound } from './queue-worker.js';

/** Approval jobs one process runs at once (each is a short statement and, for escalations, a few mails). */
const APPROVAL_CONCURRENCY = 5;
/** PENDING actions read per page by the reconciler. */
const RECONCILE_PAGE = 500;

/** A running worker of the `approvals` queue. */
export interface ApprovalWorker {
  /**
   * Adds the missing jobs of PENDING actions (an enqueue lost after commit, jobs lost with Redis):
   * every one gets its expiry job, and one whose request names an escalation that has not
   * happened gets its escalation job (from its `approval.requested` audit entry). Returns how
   * many it added.
   */
  reconcile(): Promise<number>;
  close(): Promise<void>;
}

/**
 * The BullMQ worker of the `approvals` queue (started with the execution worker): runs each
 * PENDING action's expiry at its deadline and its escalation when due (see approval-jobs.ts).
 * Jobs are harmless when the action was decided meanwhile. A reconciler, at start and every
 * `RECONCILE_SECONDS`, re-creates missing jobs.
 */
export function startApprovalWorker(app: App): ApprovalWorker {
  const { logger } = app;
  const jobs = app.engine.approvalJobs;
  if (!jobs) throw new Error('startApprovalWorker needs app.engine.approvalJobs (the approval queue)');

  async function processJob(job: Job<ApprovalJobData>, token?: string): Promise<void> {
    const outcome = await runApprovalJob(app.engine, job.data);
    if (outcome.kind === 'later' && token) {
      // The deadline is later than the job was queued for (it fired early, or the window moved).
      await job.moveToDelayed(outcome.at.getTime(), token);
      throw new DelayedError();
    }
  }

  const worker = createQueueWorker<ApprovalJobData>(app, APPROVAL_QUEUE_NAME, processJob, { concurrency: APPROVAL_CONCURRENCY });
  worker.on('failed', (job, error) => logger.warn({ actionId: job?.data.actionId, kind: job?.data.kind, err: briefError(error) }, 'approval job failed'));
  worker.on('error', (error) => logger.error({ err: error }, 'approval worker error'));

  async function reconcile(): Promise<number> {
    let added = 0;
    for (let last: string | null = null; ; ) {
      const page: Array<{ id: string; spaceId: string; approvalExpiresAt: Date | null }> = await app.db.action.findMany({
        where: { status: 'PENDING', ...(last ? { id: { gt: last } } : {}) },
        select: { id: true, spaceId: true, approvalExpiresAt: true },
        orderBy: { id: 'asc' },
        take: RECONCILE_PAGE,
      });
      if (!page.length) break;
      const entries = await app.db.auditEntry.findMany({
        where: { actionId: { in: page.map((a) => a.id) }, event: { in: ['approval.requested', 'approval.escalated'] } },
        select: { actionId: true, event: true, data: true },
      });
      const escalated = new Set(entries.filter((e) => e.event === 'approval.escalated').map((e) => e.actionId));
      const planned = new Map(
        entries.flatMap((e) => {
          const escalation = e.event === 'approval.requested' ? (e.data as { escalation?: { at: string; afterMinutes: number; to: string[] } } | null)?.escalation : undefined;
          return escalation && e.actionId ? [[e.actionId, escalation] as const] : [];
        }),
      );
      for (const action of page) {
        const wanted: ApprovalJob[] = [];
        if (action.approvalExpiresAt) wanted.push({ kind: 'expire', actionId: action.id, spaceId: action.spaceId, at: action.approvalExpiresAt });
        const escalation = planned.get(action.id);
        if (escalation && !escalated.has(action.id)) {
          wanted.push({ kind: 'escalate', actionId: action.id, spaceId: action.spaceId, afterMinutes: escalation.afterMinutes, to: escalation.to, at: new Date(escalation.at) });
        }
        for (const job of wanted) if (await jobs!.ensure(job)) added += 1;
      }
      if (page.length < RECONCILE_PAGE) break;
      last = page[page.length - 1]!.id;
    }
    if (added) logger.info({ added }, 'reconciler queued approval jobs that were missing');
    return added;
  }

  const stop = everyReconcileRound(app, reconcile, 'approval reconciler failed; retrying next round');

  return {
    reconcile,
    async close() {
      stop();
      await closeQueueWorker(app, worker);
    },
  };
}
