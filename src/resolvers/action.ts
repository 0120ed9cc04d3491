import type { Prisma } from '../generated/prisma/client.js';
import { assertReadable, canRead } from '../engine/policy.js';
import { ACTION_STATUSES } from '../engine/statuses.js';
import type { Principal } from '../context.js';
import { builder } from './builder.js';

export const ActionStatusEnum = builder.enumType('ActionStatus', { values: ACTION_STATUSES });

export const HandlerKindEnum = builder.enumType('HandlerKind', { values: ['API', 'WEBHOOK', 'EMAIL', 'MANUAL'] as const });

builder.prismaObject('StatusUpdate', {
  fields: (t) => ({
    status: t.expose('status', { type: ActionStatusEnum }),
    message: t.exposeString('message', { nullable: true }),
    timestamp: t.expose('createdAt', { type: 'DateTime' }),
    seq: t.exposeInt('seq', { description: 'Position in the action\'s history; events are de-duplicated by it.' }),
  }),
});

builder.prismaObject('Execution', {
  fields: (t) => ({
    id: t.exposeID('id'),
    action: t.relation('action'),
    handler: t.exposeString('handler'),
    kind: t.expose('kind', { type: HandlerKindEnum }),
    attempt: t.exposeInt('attempt'),
    status: t.exposeString('status'),
    startedAt: t.expose('startedAt', { type: 'DateTime' }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
    error: t.exposeString('error', { nullable: true }),
    externalRef: t.exposeString('externalRef', { nullable: true }),
  }),
});

builder.prismaObject('Receipt', {
  fields: (t) => ({
    id: t.exposeID('id'),
    action: t.relation('action'),
    receiptNumber: t.exposeString('receiptNumber'),
    provider: t.exposeString('provider'),
    handler: t.exposeString('handler'),
    externalRef: t.exposeString('externalRef', { nullable: true }),
    data: t.expose('data', { type: 'JSON' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    signature: t.string({
      description:
        "The engine's Ed25519 signature (base64url) over the receipt's canonical statement (the action, the revision that ran, its approvals, the handler path, the outcome); verify it with the key `keyId` from /.well-known/action-engine-keys. Empty for receipts issued before receipts were signed.",
      resolve: (r) => r.signature ?? '',
    }),
    keyId: t.string({
      description: 'The `kid` of the signing key at /.well-known/action-engine-keys. Empty for receipts issued before receipts were signed.',
      resolve: (r) => r.keyId ?? '',
    }),
    statement: t.string({
      description:
        'The exact text the signature covers, after the line "action-engine receipt v1": canonical JSON (sorted keys) of the receipt number, the action (id, type, revision, payloadHash), its approvals, the handler path, the handler, provider, externalRef, data and createdAt. Verify: Ed25519(publicKey, "action-engine receipt v1\\n" + statement, signature). Empty for receipts issued before receipts were signed.',
      resolve: (r) => r.statement ?? '',
    }),
  }),
});

builder.prismaObject('Rollback', {
  fields: (t) => ({
    id: t.exposeID('id'),
    status: t.exposeString('status'),
    reason: t.exposeString('reason'),
    handler: t.exposeString('handler', { nullable: true }),
    error: t.exposeString('error', { nullable: true }),
    requestedBy: t.exposeString('requestedById'),
    startedAt: t.expose('startedAt', { type: 'DateTime' }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
  }),
});

const ActionRevisionRef = builder
  .objectRef<{ revision: number; payload: unknown; payloadHash: string; author: string; diff: unknown; createdAt: Date }>('ActionRevision')
  .implement({
    description: 'One revision of an action\'s payload (spec §5: approve with edits).',
    fields: (t) => ({
      revision: t.exposeInt('revision'),
      payload: t.expose('payload', { type: 'JSON' }),
      payloadHash: t.exposeString('payloadHash'),
      author: t.exposeString('author', { description: 'Principal id: the requesting agent for revision 1, else the approver who edited it.' }),
      diff: t.expose('diff', { type: 'JSON', nullable: true, description: '[{ path, from, to }] against the previous revision; null for revision 1.' }),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
    }),
  });

const ApprovalDecisionRef = builder
  .objectRef<{ approver: string; decision: string; comment: string | null; revision: number; createdAt: Date }>('ApprovalDecision')
  .implement({
    description: 'One approver\'s decision (spec §5 quorum).',
    fields: (t) => ({
      approver: t.exposeString('approver', { description: 'Principal id, or `email-link:<token id>`.' }),
      decision: t.exposeString('decision', { description: '`approve` or `reject`.' }),
      comment: t.exposeString('comment', { nullable: true }),
      revision: t.exposeInt('revision'),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
    }),
  });

export const Action = builder.prismaObject('Action', {
  description: 'A real-world action proposed by an agent.',
  // Every field of an action is guarded: a parent reached through another type (an audit
  // entry, a receipt) is shown only to callers who may read the action itself.
  authScopes: (action, ctx) => ctx.principal !== null && canRead(ctx.principal, action),
  fields: (t) => ({
    id: t.exposeID('id'),
    type: t.exposeString('type'),
    status: t.expose('status', { type: ActionStatusEnum }),
    payload: t.expose('payload', { type: 'JSON' }),
    priority: t.exposeInt('priority'),
    userId: t.exposeID('userId'),
    spaceId: t.exposeID('spaceId'),
    requestedBy: t.exposeID('requestedById', { description: 'The principal (API key holder) that proposed it.' }),
    requiresApproval: t.exposeBoolean('requiresApproval'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    scheduledFor: t.expose('scheduledFor', { type: 'DateTime', nullable: true }),
    approvalExpiresAt: t.expose('approvalExpiresAt', { type: 'DateTime', nullable: true }),
    decidedAt: t.expose('decidedAt', { type: 'DateTime', nullable: true }),
    decidedBy: t.exposeString('decidedBy', { nullable: true }),
    attempts: t.exposeInt('attempts'),
    result: t.expose('result', { type: 'JSON', nullable: true }),
    error: t.exposeString('error', { nullable: true }),
    executions: t.relation('executions', { query: { orderBy: { startedAt: 'asc' } } }),
    receipts: t.relation('receipts', { query: { orderBy: { createdAt: 'asc' } } }),
    statusUpdates: t.relation('statusUpdates', { query: { orderBy: { seq: 'asc' } } }),
    rollbacks: t.relation('rollbacks', { query: { orderBy: { startedAt: 'asc' } } }),
    revision: t.exposeInt('revision', { description: 'The payload\'s revision: 1 as the agent sent it; each approver\'s edit makes the next.' }),
    approvalsRequired: t.exposeInt('approvalsRequired', { description: 'Distinct approvals of the current revision needed before it runs.' }),
    revisions: t.field({
      type: [ActionRevisionRef],
      description: 'Every revision of the payload, oldest first (just revision 1 when nobody edited it).',
      select: { revisions: { orderBy: { revision: 'asc' } }, payload: true, payloadHash: true, requestedById: true, createdAt: true },
      resolve: (a) =>
        a.revisions.length
          ? a.revisions
          : [{ revision: 1, payload: a.payload, payloadHash: a.payloadHash, author: a.requestedById, diff: null, createdAt: a.createdAt }],
    }),
    decisions: t.field({
      type: [ApprovalDecisionRef],
      description: 'Each approver\'s decision, oldest first, with the revision it was for.',
      select: { decisions: { orderBy: { createdAt: 'asc' } } },
      resolve: (a) => a.decisions,
    }),
    auditLog: t.relation('auditEntries', {
      description: 'The audit entries of this action, oldest first (analysts and admins).',
      authScopes: { readsAudit: true },
      query: { orderBy: { id: 'asc' } },
    }),
  }),
});

/** Narrows `actions` and `actionEvents` by status, type and user. */
export const ActionFilter = builder.inputType('ActionFilter', {
  fields: (t) => ({
    status: t.field({ type: [ActionStatusEnum], required: false }),
    type: t.stringList({ required: false }),
    userId: t.id({ required: false, description: "The user's id or handle." }),
  }),
});

/** The actions a principal may list: its space, and for agents and approvers their user's only. */
export function visibleActions(p: Principal): Prisma.ActionWhereInput {
  if (p.role !== 'AGENT' && p.role !== 'APPROVER') return { spaceId: p.spaceId };
  // An agent or approver without a user (not creatable, but be strict) sees nothing.
  return p.userId ? { spaceId: p.spaceId, userId: p.userId } : { id: { in: [] } };
}

builder.queryFields((t) => ({
  action: t.prismaField({
    type: 'Action',
    nullable: true,
    description: 'One action by id; null when there is none the caller may see.',
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      const action = await ctx.app.db.action.findFirst({ ...query, where: { id: String(id), ...visibleActions(ctx.principal!) } });
      return action ? assertReadable(ctx.principal!, action, String(id)) : null;
    },
  }),
  actions: t.prismaConnection({
    type: 'Action',
    cursor: 'id',
    description: 'Actions the caller may see, newest first.',
    authScopes: { authenticated: true },
    args: { filter: t.arg({ type: ActionFilter, required: false }) },
    resolve: (query, _root, { filter }, ctx) =>
      ctx.app.db.action.findMany({
        ...query,
        where: {
          AND: [
            visibleActions(ctx.principal!),
            filter?.status?.length ? { status: { in: filter.status } } : {},
            filter?.type?.length ? { type: { in: filter.type } } : {},
            filter?.userId ? { userId: String(filter.userId) } : {},
          ],
        },
        orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      }),
  }, { name: 'ActionConnection' }, { name: 'ActionEdge' }),
}));
