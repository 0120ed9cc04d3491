import type { User as UserRow } from '../generated/prisma/client.js';
import { appendAuditEntry } from '../engine/audit.js';
import { ApiKeyInputError, createApiKey } from '../engine/api-keys.js';
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

const ApiKeyPayload = builder
  .objectRef<{ key: string | null; principalId: string | null; userId: string | null; errors: UserErrorShape[] }>('ApiKeyPayload')
  .implement({
    fields: (t) => ({
      key: t.exposeString('key', { nullable: true, description: 'The new key. Shown this once; only its hash is stored.' }),
      principalId: t.exposeID('principalId', { nullable: true }),
      userId: t.exposeID('userId', { nullable: true }),
      errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
    }),
  });

builder.mutationFields((t) => ({
  createApiKey: t.field({
    type: ApiKeyPayload,
    description: "Create an API key in the admin's own space (like `action-engine keys create`).",
    authScopes: { admin: true },
    args: { input: t.arg({ type: ApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      asPayload<{ key: string | null; principalId: string | null; userId: string | null }>(async () => {
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
          return { key: created.key, principalId: created.principalId, userId: created.userId };
        } catch (error) {
          if (error instanceof ApiKeyInputError) {
            throw new InvalidInputError(error.message.replace('--user', 'userHandle').replace('--email', 'email').replace('--space', 'space'), [
              'input',
              /--email/.test(error.message) ? 'email' : 'userHandle',
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
        return { user };
      }, { user: null }),
  }),
}));
