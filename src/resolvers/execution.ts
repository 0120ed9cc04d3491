import type { HandlerConfig as HandlerConfigRow, ManualTask as ManualTaskRow, Action } from '../generated/prisma/client.js';
import { completeManualTask } from '../engine/manual-tasks.js';
import { rollbackAction } from '../engine/rollback.js';
import { redactSettings, secretNamesOf, upsertHandlerConfig } from '../engine/handler-configs.js';
import type { GraphQLContext } from '../context.js';
import { Action as ActionRef, visibleActions } from './action.js';
import { builder } from './builder.js';
import { asPayload, UserError, type UserErrorShape } from './user-error.js';

const ManualTaskStatusEnum = builder.enumType('ManualTaskStatus', { values: ['OPEN', 'COMPLETED', 'CANCELLED'] as const });

const ManualTask = builder.prismaObject('ManualTask', {
  description: 'Work for a human operator when no automated handler could do it.',
  fields: (t) => ({
    id: t.exposeID('id'),
    status: t.expose('status', { type: ManualTaskStatusEnum }),
    action: t.relation('action'),
    instructions: t.exposeString('instructions'),
    outcome: t.expose('outcome', { type: 'JSON', nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    completedAt: t.expose('completedAt', { type: 'DateTime', nullable: true }),
  }),
});

const HandlerConfig = builder.prismaObject('HandlerConfig', {
  description: 'How a handler reaches one provider. Secrets are write-only: only their names are shown.',
  // Admins of the configuration's space only (global defaults have no space and are not shown).
  authScopes: (c, ctx) => ctx.principal?.role === 'ADMIN' && ctx.principal.spaceId === c.spaceId,
  fields: (t) => ({
    id: t.exposeID('id'),
    handler: t.exposeString('handler'),
    provider: t.exposeString('provider'),
    enabled: t.exposeBoolean('enabled'),
    settings: t.field({
      type: 'JSON',
      description: 'Non-secret settings (a secret-looking value saved before secrets existed is shown redacted).',
      resolve: (c) => redactSettings(c.settings),
    }),
    hasSecrets: t.boolean({ description: 'Whether secrets are stored (encrypted; never returned).', resolve: (c) => c.secretsCiphertext !== null }),
    secretNames: t.stringList({ description: 'The names of the stored secrets, never their values.', resolve: (c, _args, ctx) => secretNamesOf(ctx.app.engine, c) }),
    spaceId: t.exposeID('spaceId', { nullable: true }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

const actor = (ctx: GraphQLContext) => ({ id: ctx.principal!.id, ip: ctx.ip, userAgent: ctx.userAgent });

builder.queryFields((t) => ({
  receipts: t.prismaConnection(
    {
      type: 'Receipt',
      cursor: 'id',
      description: 'Receipts of the actions the caller may see, newest first.',
      authScopes: { authenticated: true },
      args: { actionId: t.arg.id({ required: false }) },
      resolve: (query, _root, { actionId }, ctx) =>
        ctx.app.db.receipt.findMany({
          ...query,
          where: { action: visibleActions(ctx.principal!), ...(actionId ? { actionId: String(actionId) } : {}) },
          orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
        }),
    },
    { name: 'ReceiptConnection' },
    { name: 'ReceiptEdge' },
  ),
  manualTasks: t.prismaConnection(
    {
      type: 'ManualTask',
      cursor: 'id',
      description: "The space's manual tasks, oldest first (operators and admins).",
      authScopes: { $any: { role: 'OPERATOR', admin: true } },
      args: { status: t.arg({ type: ManualTaskStatusEnum, required: false }) },
      resolve: (query, _root, { status }, ctx) =>
        ctx.app.db.manualTask.findMany({
          ...query,
          where: { spaceId: ctx.principal!.spaceId, ...(status ? { status } : {}) },
          orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
        }),
    },
    { name: 'ManualTaskConnection' },
    { name: 'ManualTaskEdge' },
  ),
  handlerConfigs: t.prismaField({
    type: ['HandlerConfig'],
    description: "The handler configurations of the admin's space (secrets only by name).",
    authScopes: { admin: true },
    args: { handler: t.arg.string({ required: false }) },
    resolve: (query, _root, { handler }, ctx) =>
      ctx.app.db.handlerConfig.findMany({
        ...query,
        where: { spaceId: ctx.principal!.spaceId, ...(handler ? { handler } : {}) },
        orderBy: [{ handler: 'asc' }, { provider: 'asc' }],
      }),
  }),
}));

const ManualTaskPayload = builder.objectRef<{ task: ManualTaskRow | null; errors: UserErrorShape[] }>('ManualTaskPayload').implement({
  fields: (t) => ({
    task: t.field({ type: ManualTask, nullable: true, resolve: (p) => p.task }),
    errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
  }),
});

const RollbackPayload = builder.objectRef<{ action: Action | null; errors: UserErrorShape[] }>('RollbackPayload').implement({
  fields: (t) => ({
    action: t.field({ type: ActionRef, nullable: true, resolve: (p) => p.action }),
    errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
  }),
});

const HandlerConfigInput = builder.inputType('HandlerConfigInput', {
  fields: (t) => ({
    handler: t.string({ required: true }),
    provider: t.string({ required: true, description: 'A provider name (e.g. an order\'s provider), or * for the handler\'s default.' }),
    settings: t.field({
      type: 'JSON',
      required: false,
      description:
        'Settings that are not secret (URLs, addresses, options), a JSON object; keys that look secret (password, token, apiKey, …) are refused. Omitted: kept (a new configuration gets {}).',
    }),
    secrets: t.field({
      type: 'JSON',
      required: false,
      description:
        'Write-only: a JSON object of named secrets (API tokens, signing keys), encrypted at rest and never returned or logged. Omitted: the stored ones are kept; null: removed.',
    }),
    enabled: t.boolean({ required: false, description: 'Omitted: kept (a new configuration is enabled).' }),
  }),
});

const HandlerConfigPayload = builder.objectRef<{ config: HandlerConfigRow | null; errors: UserErrorShape[] }>('HandlerConfigPayload').implement({
  fields: (t) => ({
    config: t.field({ type: HandlerConfig, nullable: true, resolve: (p) => p.config }),
    errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
  }),
});

builder.mutationFields((t) => ({
  completeManualTask: t.field({
    type: ManualTaskPayload,
    description: 'Report a manual task done; its outcome becomes the receipt\'s data and the action completes.',
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true }), outcome: t.arg({ type: 'JSON', required: false }) },
    resolve: (_root, { id, outcome }, ctx) =>
      asPayload<{ task: ManualTaskRow | null }>(
        async () => ({ task: await completeManualTask(ctx.app.engine, ctx.principal!, actor(ctx), String(id), outcome) }),
        { task: null },
      ),
  }),
  rollbackAction: t.field({
    type: RollbackPayload,
    description: 'Undo a COMPLETED action through the handler that completed it (the user\'s approvers and admins).',
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true }), reason: t.arg.string({ required: true }) },
    resolve: (_root, { id, reason }, ctx) =>
      asPayload<{ action: Action | null }>(
        async () => ({
          action: await rollbackAction(
            { ...ctx.app.engine, handlers: ctx.app.handlers, services: ctx.app.handlerServices },
            ctx.principal!,
            actor(ctx),
            String(id),
            reason,
          ),
        }),
        { action: null },
      ),
  }),
  upsertHandlerConfig: t.field({
    type: HandlerConfigPayload,
    description: "Configure a handler for a provider in the admin's space.",
    authScopes: { admin: true },
    args: { input: t.arg({ type: HandlerConfigInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      asPayload<{ config: HandlerConfigRow | null }>(async () => ({
        config: await upsertHandlerConfig(ctx.app.engine, ctx.app.handlers, ctx.principal!, actor(ctx), input),
      }), { config: null }),
  }),
}));
