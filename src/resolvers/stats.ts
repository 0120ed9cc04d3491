import {
  MAX_STATS_BUCKETS,
  MAX_STATS_WINDOW_DAYS,
  readStats,
  STATS_BUCKETS,
  statsScope,
  statsWindow,
  type ActionStats,
  type ApprovalWaitStats,
  type HandlerStats,
  type QueueDepth,
  type StatsPoint,
  type StatusCount,
  type TypeCount,
} from '../engine/stats.js';
import { ActionStatusEnum } from './action.js';
import { builder } from './builder.js';

const StatsBucketEnum = builder.enumType('StatsBucket', {
  description: 'Width of one point of `ActionStats.series`: whole minutes, hours or days in UTC.',
  values: STATS_BUCKETS,
});

const StatusCountRef = builder.objectRef<StatusCount>('StatusCount').implement({
  fields: (t) => ({
    status: t.expose('status', { type: ActionStatusEnum }),
    count: t.exposeInt('count'),
  }),
});

const TypeCountRef = builder.objectRef<TypeCount>('TypeCount').implement({
  fields: (t) => ({
    type: t.exposeString('type'),
    count: t.exposeInt('count'),
  }),
});

const StatsPointRef = builder.objectRef<StatsPoint>('StatsPoint').implement({
  description: 'Actions created in one bucket, of one type, now in one status.',
  fields: (t) => ({
    bucketStart: t.expose('bucketStart', {
      type: 'DateTime',
      description: 'Start of the bucket: a whole UTC minute, hour or day. The first bucket may start before `from` and the last end after `to`; only actions inside the window are counted.',
    }),
    type: t.exposeString('type'),
    status: t.expose('status', { type: ActionStatusEnum, description: 'The actions\' status now (not when they were created).' }),
    count: t.exposeInt('count'),
  }),
});

const ApprovalWaitStatsRef = builder.objectRef<ApprovalWaitStats>('ApprovalWaitStats').implement({
  description:
    'How long people took to decide: actions that waited for approval and were approved or rejected (by an approver or an approval link) with the decision inside the window, each counted once from its creation to the decision that ended its wait (for a quorum, the last approval). Actions still pending, expired, or cancelled (before or after approval) are not counted.',
  fields: (t) => ({
    count: t.exposeInt('count', { description: 'Actions decided in the window.' }),
    p50Seconds: t.exposeFloat('p50Seconds', { nullable: true, description: 'Median wait in seconds, to the millisecond (interpolated, as PostgreSQL percentile_cont); null when none was decided.' }),
    p90Seconds: t.exposeFloat('p90Seconds', { nullable: true, description: '90th percentile of the wait in seconds (interpolated); null when none was decided.' }),
    maxSeconds: t.exposeFloat('maxSeconds', { nullable: true, description: 'Longest wait in seconds; null when none was decided.' }),
  }),
});

const HandlerStatsRef = builder.objectRef<HandlerStats>('HandlerStats').implement({
  description:
    'One handler\'s executions of the actions created in the window (one execution: one handler trying one action in one queue attempt; a handler skipped for want of configuration has none).',
  fields: (t) => ({
    handler: t.exposeString('handler', { description: 'e.g. `send_email.smtp`, `order.webhook`, `manual`.' }),
    attempts: t.exposeInt('attempts', { description: 'Executions of the actions created in the window: succeeded + failed + unfinished.' }),
    succeeded: t.exposeInt('succeeded', { description: 'Executions that carried the action out.' }),
    failed: t.exposeInt('failed', { description: 'Executions that failed: retryable errors, permanent ones, and attempts a stopped worker left behind.' }),
    fellBack: t.exposeInt('fellBack', {
      description: 'Failed executions after which the chain moved on to the next handler in the same attempt (the failure was permanent for this handler; a retry is a new attempt, not a fallback).',
    }),
    unfinished: t.exposeInt('unfinished', { description: 'Executions still running, or waiting for an operator or a provider\'s callback.' }),
    successRate: t.exposeFloat('successRate', { description: 'succeeded / (succeeded + failed): the share of finished executions that succeeded; 0 when none has finished.' }),
    fallbackRate: t.exposeFloat('fallbackRate', { description: 'fellBack / (succeeded + failed): the share of finished executions after which the chain fell back; 0 when none has finished.' }),
  }),
});

const QueueDepthRef = builder.objectRef<QueueDepth>('QueueDepth').implement({
  description:
    'Work waiting now (not windowed), counted in the database for the caller\'s own space (the queue\'s own counters span every space). executing + waitingOnProvider + waitingOnOperator = the EXECUTING actions.',
  fields: (t) => ({
    pendingApproval: t.exposeInt('pendingApproval', { description: 'PENDING actions: waiting for a person to approve or reject.' }),
    queued: t.exposeInt('queued', { description: 'APPROVED actions not started yet, including those waiting for their scheduled time or grace period (`scheduled`).' }),
    scheduled: t.exposeInt('scheduled', { description: 'Of `queued`, those whose scheduled time (or grace period) is still ahead.' }),
    executing: t.exposeInt('executing', { description: 'EXECUTING actions a handler is carrying out now, or that wait for their next retry.' }),
    waitingOnProvider: t.exposeInt('waitingOnProvider', { description: 'EXECUTING actions handed to a provider that has yet to confirm (a callback settles them).' }),
    waitingOnOperator: t.exposeInt('waitingOnOperator', { description: 'EXECUTING actions with an open manual task.' }),
    openManualTasks: t.exposeInt('openManualTasks', { description: 'OPEN manual tasks (the operators\' queue).' }),
  }),
});

const ActionStatsRef = builder.objectRef<ActionStats>('ActionStats').implement({
  description:
    'The numbers behind the console\'s overview, over the half-open window [from, to): the caller\'s space\'s actions (an approver\'s: its own user\'s). Counts by status, type and bucket are of the actions created in the window, by the status they have now.',
  fields: (t) => ({
    from: t.expose('from', { type: 'DateTime' }),
    to: t.expose('to', { type: 'DateTime' }),
    bucket: t.expose('bucket', { type: StatsBucketEnum }),
    total: t.exposeInt('total', { description: 'Actions created in the window.' }),
    byStatus: t.field({
      type: [StatusCountRef],
      description: 'Actions created in the window, by their current status; statuses with none are left out; in lifecycle order (the ActionStatus enum\'s).',
      resolve: (s) => s.byStatus,
    }),
    byType: t.field({
      type: [TypeCountRef],
      description: 'Actions created in the window, by type; most first (then by name); types with none are left out.',
      resolve: (s) => s.byType,
    }),
    series: t.field({
      type: [StatsPointRef],
      description: 'Actions created per bucket × type × current status, only rows with a count, ordered by bucketStart, then type, then status.',
      resolve: (s) => s.series,
    }),
    approvalWait: t.field({ type: ApprovalWaitStatsRef, resolve: (s) => s.approvalWait }),
    handlers: t.field({
      type: [HandlerStatsRef],
      description: 'Per handler, the executions of the actions created in the window (the actions counted in `total`, whenever they ran); by handler name.',
      resolve: (s) => s.handlers,
    }),
    queue: t.field({ type: QueueDepthRef, resolve: (s) => s.queue }),
  }),
});

builder.queryFields((t) => ({
  stats: t.field({
    type: ActionStatsRef,
    description:
      `The console's overview over [from, to) (defaults: to = now, from = 24 hours before to, HOUR buckets). Admins, analysts and operators get their space's; an approver its own user's actions only; agents are refused (FORBIDDEN). INVALID_INPUT naming the argument when from is not before to, the window is longer than ${MAX_STATS_WINDOW_DAYS} days, or it would make more than ${MAX_STATS_BUCKETS.toLocaleString('en-US')} buckets.`,
    authScopes: { authenticated: true },
    args: {
      from: t.arg({ type: 'DateTime', required: false, description: 'Start of the window (inclusive).' }),
      to: t.arg({ type: 'DateTime', required: false, description: 'End of the window (exclusive); default now.' }),
      bucket: t.arg({ type: StatsBucketEnum, required: false, description: 'Width of the series\' buckets; default HOUR.' }),
    },
    resolve: async (_root, args, ctx) => {
      const scope = statsScope(ctx.principal!);
      const now = ctx.app.engine.clock();
      const window = statsWindow(args, now);
      return readStats(ctx.app.db, scope, window, now);
    },
  }),
}));
