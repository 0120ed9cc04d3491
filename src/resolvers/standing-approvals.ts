import type { StandingApproval as StandingApprovalRow } from '../generated/prisma/client.js';
import type { GraphQLContext } from '../context.js';
import { createStandingApproval, listStandingApprovals, revokeStandingApproval } from '../engine/standing-approvals.js';
import { builder } from './builder.js';
import { asPayload, UserError, type UserErrorShape } from './user-error.js';

const actorOf = (ctx: GraphQLContext) => ({ id: ctx.principal!.id, ip: ctx.ip, userAgent: ctx.userAgent });

const StandingApproval = builder.prismaObject('StandingApproval', {
  description: 'Approval in advance of the actions of one type (for one user, or every user of the space), optionally only those matching a condition, until expiresAt.',
  authScopes: (grant, ctx) => ctx.principal !== null && ctx.principal.spaceId === grant.spaceId,
  fields: (t) => ({
    id: t.exposeID('id'),
    type: t.exposeString('actionType'),
    userId: t.exposeID('userId', { nullable: true, description: 'Null: every user of the space.' }),
    condition: t.exposeString('condition', { nullable: true, description: 'A CEL expression as for safety rules; the grant covers only actions where it is true.' }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime' }),
    createdBy: t.exposeID('createdById', { description: 'The principal that granted it.' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
    active: t.boolean({ description: 'Not revoked and not expired.', resolve: (g) => g.revokedAt === null && g.expiresAt.getTime() > Date.now() }),
  }),
});

const StandingApprovalInput = builder.inputType('StandingApprovalInput', {
  fields: (t) => ({
    type: t.string({ required: true, description: 'The action type; never make_payment.' }),
    userId: t.id({ required: false, description: "The user; default: an approver's own user. Admins may leave it out for every user of the space." }),
    condition: t.string({ required: false, description: 'A CEL expression over payload, type, user and now; only matching actions are approved.' }),
    expiresAt: t.field({ type: 'DateTime', required: true, description: 'When it ends (at most 366 days ahead).' }),
  }),
});

const StandingApprovalPayload = builder
  .objectRef<{ standingApproval: StandingApprovalRow | null; errors: UserErrorShape[] }>('StandingApprovalPayload')
  .implement({
    fields: (t) => ({
      standingApproval: t.field({ type: StandingApproval, nullable: true, resolve: (p) => p.standingApproval }),
      errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
    }),
  });

builder.queryFields((t) => ({
  standingApprovals: t.field({
    type: [StandingApproval],
    description: "Standing approvals of the caller's space that it may see (approvers and agents: their user's and the space-wide ones).",
    authScopes: { authenticated: true },
    args: { active: t.arg.boolean({ required: false, description: 'Default true: only those in force.' }) },
    resolve: (_root, { active }, ctx) => listStandingApprovals(ctx.app.engine, ctx.principal!, { activeOnly: active ?? true, now: new Date() }),
  }),
}));

builder.mutationFields((t) => ({
  createStandingApproval: t.field({
    type: StandingApprovalPayload,
    description: "Approve in advance (the user's approvers, the space's admins); audited.",
    authScopes: { $any: { role: 'APPROVER', admin: true } },
    args: { input: t.arg({ type: StandingApprovalInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      asPayload<{ standingApproval: StandingApprovalRow | null }>(
        async () => ({
          standingApproval: await createStandingApproval(ctx.app.engine, ctx.principal!, actorOf(ctx), {
            type: input.type,
            userId: input.userId == null ? null : String(input.userId),
            condition: input.condition ?? null,
            expiresAt: input.expiresAt,
          }),
        }),
        { standingApproval: null },
      ),
  }),
  revokeStandingApproval: t.field({
    type: StandingApprovalPayload,
    description: 'End a standing approval now; audited. Revoking again changes nothing.',
    authScopes: { $any: { role: 'APPROVER', admin: true } },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, ctx) =>
      asPayload<{ standingApproval: StandingApprovalRow | null }>(
        async () => ({ standingApproval: await revokeStandingApproval(ctx.app.engine, ctx.principal!, actorOf(ctx), String(id)) }),
        { standingApproval: null },
      ),
  }),
}));
