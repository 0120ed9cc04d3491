import type { WebhookEndpoint as WebhookEndpointRow } from '../generated/prisma/client.js';
import type { GraphQLContext } from '../context.js';
import { upsertWebhookEndpoint } from '../engine/webhook-endpoints.js';
import { webhookBody, webhookIdOf } from '../engine/webhook-delivery.js';
import { ActionStatusEnum } from './action.js';
import { builder } from './builder.js';
import { asPayload, UserError, type UserErrorShape } from './user-error.js';

const WebhookDeliveryStateEnum = builder.enumType('WebhookDeliveryState', {
  description: 'PENDING: not delivered yet (waiting, or being retried); DELIVERED: the endpoint answered 2xx; FAILED: given up (the endpoint was disabled).',
  values: ['PENDING', 'DELIVERED', 'FAILED'] as const,
});

const WebhookEndpoint = builder.prismaObject('WebhookEndpoint', {
  description: 'Where every status change of the space\'s actions is sent, signed per Standard Webhooks. The secret is write-only and never shown.',
  authScopes: (e, ctx) => ctx.principal?.role === 'ADMIN' && ctx.principal.spaceId === e.spaceId,
  fields: (t) => ({
    id: t.exposeID('id'),
    url: t.exposeString('url'),
    events: t.field({ type: [ActionStatusEnum], description: 'The statuses delivered; empty: every status.', resolve: (e) => e.events }),
    enabled: t.exposeBoolean('enabled'),
    disabledReason: t.exposeString('disabledReason', { nullable: true, description: 'Why the engine disabled it (repeated failed deliveries); null otherwise.' }),
    disabledAt: t.expose('disabledAt', { type: 'DateTime', nullable: true }),
    consecutiveFailures: t.exposeInt('consecutiveFailures', { description: 'Failed attempts in a row; the endpoint is disabled at WEBHOOK_MAX_FAILURES.' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.prismaObject('WebhookDelivery', {
  description: 'One status change of one action sent (or to be sent) to one endpoint: the delivery log.',
  authScopes: { admin: true },
  fields: (t) => ({
    id: t.exposeID('id'),
    webhookId: t.string({ description: 'The `webhook-id` header: the same on every attempt, so a receiver can drop repeats.', resolve: (d) => webhookIdOf(d.id) }),
    endpoint: t.relation('endpoint'),
    actionId: t.exposeID('actionId'),
    status: t.expose('status', { type: ActionStatusEnum }),
    seq: t.exposeInt('seq'),
    message: t.exposeString('message', { nullable: true }),
    body: t.string({ description: 'The JSON body sent (the same bytes on every attempt).', resolve: (d) => webhookBody(d) }),
    state: t.expose('state', { type: WebhookDeliveryStateEnum }),
    attempts: t.exposeInt('attempts'),
    lastStatusCode: t.exposeInt('lastStatusCode', { nullable: true, description: 'The HTTP status of the last attempt; null when there was no answer.' }),
    lastError: t.exposeString('lastError', { nullable: true }),
    lastAttemptAt: t.expose('lastAttemptAt', { type: 'DateTime', nullable: true }),
    nextAttemptAt: t.expose('nextAttemptAt', { type: 'DateTime', nullable: true, description: 'When a PENDING delivery that failed is tried again.' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    deliveredAt: t.expose('deliveredAt', { type: 'DateTime', nullable: true }),
  }),
});

const WebhookEndpointInput = builder.inputType('WebhookEndpointInput', {
  fields: (t) => ({
    url: t.string({ required: true, description: 'http or https; an endpoint is identified by its URL within the space (registering it again changes it).' }),
    secret: t.string({
      required: true,
      description: 'Write-only: a Standard Webhooks secret, whsec_ followed by the base64 of 24 to 64 random bytes; encrypted at rest, never returned or logged.',
    }),
    events: t.field({ type: [ActionStatusEnum], required: false, description: 'The statuses to deliver; null or empty: every status. Omitted: kept (a new endpoint gets every status).' }),
    enabled: t.boolean({ required: false, description: 'Omitted: kept (a new endpoint is enabled). true on a disabled endpoint enables it again and clears its failures.' }),
  }),
});

const WebhookEndpointPayload = builder.objectRef<{ endpoint: WebhookEndpointRow | null; errors: UserErrorShape[] }>('WebhookEndpointPayload').implement({
  fields: (t) => ({
    endpoint: t.field({ type: WebhookEndpoint, nullable: true, resolve: (p) => p.endpoint }),
    errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
  }),
});

const actor = (ctx: GraphQLContext) => ({ id: ctx.principal!.id, ip: ctx.ip, userAgent: ctx.userAgent });

builder.queryFields((t) => ({
  webhookEndpoints: t.prismaField({
    type: ['WebhookEndpoint'],
    description: "The outbound webhook endpoints of the admin's space (never their secrets).",
    authScopes: { admin: true },
    resolve: (query, _root, _args, ctx) =>
      ctx.app.db.webhookEndpoint.findMany({ ...query, where: { spaceId: ctx.principal!.spaceId }, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] }),
  }),
  webhookDeliveries: t.prismaConnection(
    {
      type: 'WebhookDelivery',
      cursor: 'id',
      description: "The delivery log of the admin's space, newest first; by endpoint and/or action.",
      authScopes: { admin: true },
      args: { endpointId: t.arg.id({ required: false }), actionId: t.arg.id({ required: false }) },
      resolve: (query, _root, { endpointId, actionId }, ctx) =>
        ctx.app.db.webhookDelivery.findMany({
          ...query,
          where: {
            endpoint: { spaceId: ctx.principal!.spaceId },
            ...(endpointId ? { endpointId: String(endpointId) } : {}),
            ...(actionId ? { actionId: String(actionId) } : {}),
          },
          orderBy: { position: 'desc' },
        }),
    },
    { name: 'WebhookDeliveryConnection' },
    { name: 'WebhookDeliveryEdge' },
  ),
}));

builder.mutationFields((t) => ({
  upsertWebhookEndpoint: t.field({
    type: WebhookEndpointPayload,
    description: "Register or change an outbound webhook endpoint of the admin's space (by URL).",
    authScopes: { admin: true },
    args: { input: t.arg({ type: WebhookEndpointInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      asPayload<{ endpoint: WebhookEndpointRow | null }>(
        async () => ({
          endpoint: await upsertWebhookEndpoint(ctx.app.engine, { blockPrivate: ctx.app.config.outboundBlockPrivate }, ctx.principal!, actor(ctx), input),
        }),
        { endpoint: null },
      ),
  }),
}));
