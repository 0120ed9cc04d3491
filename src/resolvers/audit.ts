import { builder } from './builder.js';

builder.prismaObject('AuditEntry', {
  description: 'One entry of the append-only audit trail: each action\'s entries form their own hash chain, sealed into Ed25519-signed checkpoints (see /.well-known/action-engine-keys and `action-engine audit verify`).',
  fields: (t) => ({
    id: t.id({ resolve: (e) => e.id.toString(), description: 'Insertion order across all chains (entries of concurrent writers may commit out of this order).' }),
    chain: t.exposeString('chain', {
      description: 'The hash chain this entry belongs to: the action id for an action\'s events, `admin:<space id>` for admin events, `legacy` for entries written before per-chain hashing.',
    }),
    chainSeq: t.exposeInt('chainSeq', { description: 'Place in its chain, from 1; `prevHash` is the hash of the entry before it in the same chain.' }),
    action: t.relation('action', { nullable: true }),
    event: t.exposeString('event'),
    actor: t.exposeString('actor', { description: 'Principal id, `system`, or `email-link:<token id>`.' }),
    ip: t.exposeString('ip', { nullable: true }),
    userAgent: t.exposeString('userAgent', { nullable: true }),
    data: t.expose('data', { type: 'JSON' }),
    hash: t.exposeString('hash'),
    prevHash: t.exposeString('prevHash'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

const AuditFilter = builder.inputType('AuditFilter', {
  fields: (t) => ({
    actor: t.string({ required: false }),
    event: t.stringList({ required: false, description: 'e.g. ["action.approved", "action.rejected"]' }),
    from: t.field({ type: 'DateTime', required: false, description: 'Entries at or after this time.' }),
    to: t.field({ type: 'DateTime', required: false, description: 'Entries before this time.' }),
  }),
});

builder.queryFields((t) => ({
  auditLog: t.prismaConnection({
    type: 'AuditEntry',
    cursor: 'id',
    description: "The space's audit trail, oldest first (analysts and admins).",
    authScopes: { readsAudit: true },
    args: { actionId: t.arg.id({ required: false }), filter: t.arg({ type: AuditFilter, required: false }) },
    resolve: (query, _root, { actionId, filter }, ctx) =>
      ctx.app.db.auditEntry.findMany({
        ...query,
        where: {
          spaceId: ctx.principal!.spaceId,
          ...(actionId ? { actionId: String(actionId) } : {}),
          ...(filter?.actor ? { actor: filter.actor } : {}),
          ...(filter?.event?.length ? { event: { in: filter.event } } : {}),
          ...(filter?.from || filter?.to
            ? { createdAt: { ...(filter.from ? { gte: filter.from } : {}), ...(filter.to ? { lt: filter.to } : {}) } }
            : {}),
        },
        orderBy: { id: 'asc' },
      }),
  }, { name: 'AuditEntryConnection' }, { name: 'AuditEntryEdge' }),
}));
