import SchemaBuilder from '@pothos/core';
import { GraphQLError } from 'graphql';
import PrismaPlugin from '@pothos/plugin-prisma';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import ValidationPlugin from '@pothos/plugin-validation';
import type PrismaTypes from '../generated/pothos-types.js';
import { getDatamodel } from '../generated/pothos-types.js';
import type { GraphQLContext, Principal } from '../context.js';
import { DateTimeScalar, JsonScalar } from './scalars.js';

/**
 * The one Pothos builder. Expected refusals are not thrown: mutation payloads carry
 * `errors: [UserError!]!` as spec §10 fixes, which is why plugin-errors (union results) is
 * not used. The Prisma client is taken from the context, never built here.
 */
export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  PrismaTypes: PrismaTypes;
  AuthScopes: {
    authenticated: boolean;
    role: Principal['role'];
    /** Analysts and admins read the audit trail. */
    readsAudit: boolean;
    admin: boolean;
  };
  Scalars: {
    DateTime: { Input: Date; Output: Date | string };
    JSON: { Input: unknown; Output: unknown };
  };
  DefaultFieldNullability: false;
}>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin, PrismaPlugin, RelayPlugin, ValidationPlugin],
  scopeAuth: {
    authorizeOnSubscribe: true,
    authScopes: (ctx) => ({
      authenticated: ctx.principal !== null,
      role: (role) => ctx.principal?.role === role,
      readsAudit: ctx.principal?.role === 'ANALYST' || ctx.principal?.role === 'ADMIN',
      admin: ctx.principal?.role === 'ADMIN',
    }),
    // No key, or a key that is unknown or revoked: say what is missing rather than "not authorized".
    unauthorizedError: (_parent, ctx, _info, result) =>
      ctx.principal
        ? new GraphQLError(`forbidden: ${result.message}`, { extensions: { code: 'FORBIDDEN' } })
        : new GraphQLError('authentication required: send "Authorization: Bearer <API key>" (graphql-ws: connectionParams.authorization)', {
            extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } },
          }),
  },
  prisma: {
    client: (ctx) => ctx.app.db,
    dmmf: getDatamodel(),
    exposeDescriptions: false,
    filterConnectionTotalCount: true,
    onUnusedQuery: null,
  },
  relay: {
    clientMutationId: 'omit',
    cursorType: 'String',
  },
});

builder.addScalarType('DateTime', DateTimeScalar);
builder.addScalarType('JSON', JsonScalar);
