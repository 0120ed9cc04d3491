import type { Action } from '../generated/prisma/client.js';
import { cancelAction, decideAction } from '../engine/approvals.js';
import { createAction } from '../engine/create-action.js';
import type { Actor } from '../engine/deps.js';
import type { GraphQLContext } from '../context.js';
import { Action as ActionRef } from './action.js';
import { builder } from './builder.js';
import { asPayload, toUserError, UserError } from './user-error.js';

function actorOf(ctx: GraphQLContext): Actor {
  return { id: ctx.principal!.id, ip: ctx.ip, userAgent: ctx.userAgent };
}

const CreateActionInput = builder.inputType('CreateActionInput', {
  fields: (t) => ({
    type: t.string({ required: true }),
    payload: t.field({ type: 'JSON', required: true }),
    userId: t.id({ required: false, description: "The user's id or handle; defaults to the user the agent acts for (the only one it may name)." }),
    priority: t.int({ required: false, description: '1 highest … 10 lowest; default 5.' }),
    scheduledFor: t.field({ type: 'DateTime', required: false }),
    idempotencyKey: t.string({
      required: false,
      description: 'Repeating a key with the same input returns the first result; with a different input it is refused.',
    }),
  }),
});

const CreateActionPayload = builder
  .objectRef<{ action: Action | null; requiresApproval: boolean; errors: ReturnType<typeof toUserError>[] }>('CreateActionPayload')
  .implement({
    fields: (t) => ({
      action: t.field({ type: ActionRef, nullable: true, resolve: (p) => p.action }),
      requiresApproval: t.boolean({ resolve: (p) => p.requiresApproval ?? false }),
      errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
    }),
  });

const DecisionPayload = builder.objectRef<{ action: Action | null; errors: ReturnType<typeof toUserError>[] }>('DecisionPayload').implement({
  fields: (t) => ({
    action: t.field({ type: ActionRef, nullable: true, resolve: (p) => p.action }),
    errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
  }),
});

builder.mutationFields((t) => ({
  createAction: t.field({
    type: CreateActionPayload,
    description: 'Propose an action. Safety rules decide: BLOCKED (recorded), RATE_LIMITED, PENDING (approval needed) or APPROVED.',
    authScopes: { authenticated: true },
    args: { input: t.arg({ type: CreateActionInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      asPayload<{ action: Action | null; requiresApproval: boolean }>(async () => {
        const result = await createAction(ctx.app.engine, ctx.principal!, actorOf(ctx), {
          type: input.type,
          payload: input.payload,
          userId: input.userId == null ? null : String(input.userId),
          priority: input.priority ?? null,
          scheduledFor: input.scheduledFor ?? null,
          idempotencyKey: input.idempotencyKey ?? null,
        });
        return { action: result.action, requiresApproval: result.requiresApproval, errors: result.errors.map(toUserError) };
      }, { action: null, requiresApproval: false }),
  }),
  approveAction: t.field({
    type: DecisionPayload,
    description:
      "Approve a PENDING action (the user's approvers only; never the requesting agent). With `payload`, approve an edited payload: validated like a new one, it becomes the next revision (the old one is kept) and old approval links are void. With a quorum, the action moves on once enough distinct approvers approved its current revision.",
    authScopes: { authenticated: true },
    args: {
      id: t.arg.id({ required: true }),
      comment: t.arg.string({ required: false }),
      payload: t.arg({ type: 'JSON', required: false, description: 'The payload as the approver wants it run (the whole payload, not a patch).' }),
      revision: t.arg.int({
        required: false,
        description: 'The revision the approver reviewed: when another approver has edited the action since, the approval is refused (INVALID_TRANSITION) instead of counting for a payload this approver has not seen. Without it, the revision current when the request arrives.',
      }),
    },
    resolve: (_root, { id, comment, payload, revision }, ctx) =>
      asPayload<{ action: Action | null }>(async () => ({ action: await decideAction(ctx.app.engine, ctx.principal!, actorOf(ctx), String(id), 'approve', comment, payload ?? undefined, revision) }), {
        action: null,
      }),
  }),
  rejectAction: t.field({
    type: DecisionPayload,
    description: 'Reject a PENDING action, with a reason.',
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true }), reason: t.arg.string({ required: false }) },
    resolve: (_root, { id, reason }, ctx) =>
      asPayload<{ action: Action | null }>(async () => ({ action: await decideAction(ctx.app.engine, ctx.principal!, actorOf(ctx), String(id), 'reject', reason) }), {
        action: null,
      }),
  }),
  cancelAction: t.field({
    type: DecisionPayload,
    description: 'Cancel a PENDING or APPROVED action before it runs.',
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true }), reason: t.arg.string({ required: false }) },
    resolve: (_root, { id, reason }, ctx) =>
      asPayload<{ action: Action | null }>(async () => ({ action: await cancelAction(ctx.app.engine, ctx.principal!, actorOf(ctx), String(id), reason) }), {
        action: null,
      }),
  }),
}));
