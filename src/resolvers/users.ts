import type { User as UserRow } from '../generated/prisma/client.js';
import { appendAuditEntry } from '../engine/audit.js';
import { ApiKeyInputError, createApiKey, findApiKeyListing, listApiKeys, revokeApiKey, type ApiKeyListing } from '../engine/api-keys.js';
import { announceKeyRevocation } from '../engine/key-revocation.js';
import { InvalidInputError, NotFoundError } from '../engine/errors.js';
import { builder } from './builder.js';
import { asPayload, UserError, type UserErrorShape } from './user-error.js';

const KycStatusEnum = builder.enumType('KycStatus', { values: ['NONE', 'PENDING', 'VERIFIED', 'REJECTED'] as const });
const RoleEnum = builder.enumType('Role', { values: ['AGENT', 'APPROVER', 'OPERATOR', 'ANALYST', 'ADMIN'] as const });

const User = builder.prismaObject('User', {
  description: 'A person on whose behalf agents act.',
  authScopes: (user, ctx) => ctx.principal !== null && ctx.principal.spaceId === user.spaceId,
  fields: (t) => ({
    id: t.exposeID('id'),
    handle: t.exposeString('handle'),
    email: t.string({
      nullable: true,
      description: "Where approval requests go (the user's own agents and approvers, and admins).",
      resolve: (u, _args, ctx) => (ctx.principal?.role === 'ADMIN' || ctx.principal?.userId === u.id ? u.email : null),
    }),
    kycStatus: t.expose('kycStatus', { type: KycStatusEnum }),
  }),
});

const Viewer = builder
  .objectRef<{ principalId: string; role: 'AGENT' | 'APPROVER' | 'OPERATOR' | 'ANALYST' | 'ADMIN'; spaceId: string; userId: string | null }>('Viewer')
  .implement({
    description: 'The caller, as its API key identifies it.',
    fields: (t) => ({
      principalId: t.exposeID('principalId'),
      role: t.expose('role', { type: RoleEnum }),
      spaceId: t.exposeID('spaceId'),
      user: t.prismaField({
        type: 'User',
        nullable: true,
        resolve: (query, v, _args, ctx) => (v.userId ? ctx.app.db.user.findUnique({ ...query, where: { id: v.userId } }) : null),
      }),
    }),
  });

const UserPayload = builder.objectRef<{ user: UserRow | null; errors: UserErrorShape[] }>('UserPayload').implement({
  fields: (t) => ({
    user: t.field({ type: User, nullable: true, resolve: (p) => p.user }),
    errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
  }),
});

builder.queryFields((t) => ({
  me: t.field({
    type: Viewer,
    description: 'Who the API key belongs to: role, space and (for agents and approvers) user.',
    authScopes: { authenticated: true },
    resolve: (_root, _args, ctx) => {
      const p = ctx.principal!;
      return { principalId: p.id, role: p.role, spaceId: p.spaceId, userId: p.userId };
    },
  }),
}));

const ApiKeyInput = builder.inputType('ApiKeyInput', {
  fields: (t) => ({
    role: t.field({ type: RoleEnum, required: true }),
    userHandle: t.string({ required: false, description: 'The user it acts for (created if new); required for agents and approvers.' }),
    email: t.string({ required: false, description: "The user's email, where approval requests go." }),
    name: t.string({ required: false }),
  }),
});

const ApiKey = builder.objectRef<ApiKeyListing>('ApiKey').implement({
  description: 'An API key as admins see it: never the key or its hash.',
  fields: (t) => ({
    id: t.exposeID('id'),
    prefix: t.exposeString('prefix', { description: 'The first characters of the key, to tell keys apart.' }),
    role: t.expose('role', { type: RoleEnum }),
    principalId: t.exposeID('principalId'),
    name: t.exposeString('name'),
    userId: t.exposeID('userId', { nullable: true }),
    userHandle: t.exposeString('user', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true, description: 'Set once revoked; the key then authenticates nothing.' }),
  }),
});

const ApiKeyPayload = builder
  .objectRef<{ key: string | null; principalId: string | null; userId: string | null; apiKey?: ApiKeyListing | null; errors: UserErrorShape[] }>('ApiKeyPayload')
  .implement({
    fields: (t) => ({
      key: t.exposeString('key', { nullable: true, description: 'The new key (createApiKey only). Shown this once; only its hash is stored.' }),
      apiKey: t.field({ type: ApiKey, nullable: true, description: 'The key created or revoked.', resolve: (p) => p.apiKey ?? null }),
      principalId: t.exposeID('principalId', { nullable: true }),
      userId: t.exposeID('userId', { nullable: true }),
      errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
    }),
  });

builder.queryFields((t) => ({
  apiKeys: t.field({
    type: [ApiKey],
    description: "The API keys of the admin's space, oldest first, revoked ones included (never the keys or their hashes).",
    authScopes: { admin: true },
    resolve: (_root, _args, ctx) => listApiKeys(ctx.app.db, { spaceId: ctx.principal!.spaceId }),
  }),
}));

builder.mutationFields((t) => ({
  revokeApiKey: t.field({
    type: ApiKeyPayload,
    description:
      "Revoke an API key of the admin's own space: within seconds it authenticates nothing, over HTTP and WebSocket, on every API process, and its open WebSocket connections are closed (4403). Takes the key's id or its prefix (as listed by apiKeys; an ambiguous prefix is INVALID_INPUT). Audited. An unknown, malformed or other-space id is NOT_FOUND; an already revoked key is REVOKED.",
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, ctx) =>
      asPayload<{ key: null; principalId: string | null; userId: string | null; apiKey: ApiKeyListing | null }>(async () => {
        const p = ctx.principal!;
        const revoked = await revokeApiKey(ctx.app.db, { ref: String(id), allowPrefix: true, spaceId: p.spaceId, actor: p.id, ip: ctx.ip, userAgent: ctx.userAgent });
        ctx.app.auth.forget(revoked.id);
        ctx.app.keyRevocations.emit(revoked.id);
        if (!(await announceKeyRevocation(ctx.app.publisher, ctx.app.config.redisPrefix, revoked.id))) {
          ctx.app.logger.warn({ apiKeyId: revoked.id }, 'could not announce a key revocation on Redis; API processes will notice at their next re-check');
        }
        return { key: null, principalId: revoked.principalId, userId: revoked.userId, apiKey: revoked };
      }, { key: null, principalId: null, userId: null, apiKey: null }),
  }),
  createApiKey: t.field({
    type: ApiKeyPayload,
    description: "Create an API key in the admin's own space (like `action-engine keys create`).",
    authScopes: { admin: true },
    args: { input: t.arg({ type: ApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      asPayload<{ key: string | null; principalId: string | null; userId: string | null; apiKey?: ApiKeyListing | null }>(async () => {
        const p = ctx.principal!;
        const space = await ctx.app.db.space.findUniqueOrThrow({ where: { id: p.spaceId }, select: { slug: true } });
        try {
          const created = await createApiKey(ctx.app.db, {
            role: input.role,
            space: space.slug,
            user: input.userHandle ?? undefined,
            email: input.email ?? undefined,
            name: input.name ?? undefined,
            actor: p.id,
            ip: ctx.ip,
            userAgent: ctx.userAgent,
          });
          // The user's email may have changed (approval mail goes there): drop cached copies everywhere.
          if (created.userId && input.email != null) {
            await ctx.app.configCache.invalidate({ kind: 'user', spaceId: created.spaceId, userId: created.userId });
          }
          return { key: created.key, principalId: created.principalId, userId: created.userId, apiKey: await findApiKeyListing(ctx.app.db, created.apiKeyId) };
        } catch (error) {
          if (error instanceof ApiKeyInputError) {
            const field = /^--email/.test(error.message) ? 'email' : /^--name/.test(error.message) ? 'name' : 'userHandle';
            throw new InvalidInputError(error.message.replace('--user', 'userHandle').replace('--email', 'email').replace('--space', 'space').replace('--name', 'name'), [
              'input',
              field,
            ]);
          }
          throw error;
        }
      }, { key: null, principalId: null, userId: null }),
  }),
  setKycStatus: t.field({
    type: UserPayload,
    description: "Record a user's KYC status (admins).",
    authScopes: { admin: true },
    args: { userId: t.arg.id({ required: true }), status: t.arg({ type: KycStatusEnum, required: true }) },
    resolve: (_root, { userId, status }, ctx) =>
      asPayload<{ user: UserRow | null }>(async () => {
        const p = ctx.principal!;
        const user = await ctx.app.db.$transaction(async (tx) => {
          const current = await tx.user.findFirst({ where: { id: String(userId), spaceId: p.spaceId }, select: { id: true, kycStatus: true } });
          if (!current) throw new NotFoundError(`no user with id ${userId}`, ['userId']);
          // Re-read under a row lock, so `before` is the status this write replaces when admins race.
          const [locked] = await tx.$queryRaw<Array<{ kycStatus: UserRow['kycStatus'] }>>`
            SELECT "kycStatus"::text AS "kycStatus" FROM "User" WHERE "id" = ${current.id}::uuid FOR UPDATE`;
          const before = locked?.kycStatus ?? current.kycStatus;
          const updated = await tx.user.update({ where: { id: current.id }, data: { kycStatus: status, kycUpdatedAt: new Date() } });
          await appendAuditEntry(tx, {
            event: 'user.kyc_changed',
            actor: p.id,
            ip: ctx.ip,
            userAgent: ctx.userAgent,
            spaceId: p.spaceId,
            data: { userId: current.id, from: before, to: status, before, after: status },
          });
          return updated;
        });
        // After commit: every process drops its cached copy, so the next action sees the new status.
        await ctx.app.configCache.invalidate({ kind: 'user', spaceId: p.spaceId, userId: user.id });
        return { user };
      }, { user: null }),
  }),
}));
