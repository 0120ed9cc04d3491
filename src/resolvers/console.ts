import { verifyAuditLog } from '../engine/audit.js';
import { builder } from './builder.js';

/**
 * Fields the console (/console) needs that the rest of the API did not have: an action told in
 * people's words (the type's own `describe`, as in the approval mail and page) and whether the
 * audit trail verifies (what `action-engine audit verify` says).
 */

const ActionDetail = builder
  .objectRef<{ label: string; value: string | string[]; format?: 'inline' | 'text' | 'json' }>('ActionDetail')
  .implement({
    description: 'One line of an action told for people: a label and its value (a list for lists).',
    fields: (t) => ({
      label: t.exposeString('label'),
      value: t.stringList({ description: 'One item, or the items of a list.', resolve: (d) => (Array.isArray(d.value) ? d.value : [d.value]) }),
      isList: t.boolean({ resolve: (d) => Array.isArray(d.value) }),
      format: t.string({ description: '`inline`, `text` (a block of text) or `json`.', resolve: (d) => d.format ?? 'inline' }),
    }),
  });

builder.prismaObjectFields('Action', (t) => ({
  headline: t.string({
    description: "What the action will do, in one line for people (the action type's own description of this payload).",
    select: { type: true, payload: true },
    resolve: (a, _args, ctx) => ctx.app.engine.types.describe(a.type, a.payload).headline,
  }),
  details: t.field({
    type: [ActionDetail],
    description: 'The full request told for people, field by field, as the approval page shows it.',
    select: { type: true, payload: true },
    resolve: (a, _args, ctx) => ctx.app.engine.types.describe(a.type, a.payload).details,
  }),
}));

interface AuditVerificationShape {
  ok: boolean;
  entriesChecked: number;
  checkpoints: number;
  sealed: number;
  unsealed: number;
  problem: string | null;
}

const AuditVerificationRef = builder.objectRef<AuditVerificationShape>('AuditVerification').implement({
  description: 'Whether the audit trail verifies: every hash chain against its entries and heads, and the signed checkpoints.',
  fields: (t) => ({
    ok: t.exposeBoolean('ok', { description: 'True when every chain and every checkpoint verifies.' }),
    entriesChecked: t.exposeInt('entriesChecked'),
    checkpoints: t.exposeInt('checkpoints', { description: 'Signed checkpoints examined.' }),
    sealed: t.exposeInt('sealed', { description: 'Entries compared with the checkpoints that sealed them.' }),
    unsealed: t.exposeInt('unsealed', { description: 'Entries newer than the last checkpoint (not yet sealed).' }),
    problem: t.exposeString('problem', { nullable: true, description: 'What is wrong, in words, when ok is false.' }),
  }),
});

/** How long one verification (a read of the whole audit table) answers every caller of a process. */
const VERIFICATION_CACHE_MS = 30_000;
type Cached<T> = { at: number; result: Promise<T> };
/** Per database (one per app), so two apps in one process never share a result. */
const caches = new WeakMap<object, { verification: Cached<Awaited<ReturnType<typeof verifyAuditLog>>> | null; spaces: Map<string, Cached<{ total: number; unsealed: number }>> }>();

builder.queryFields((t) => ({
  auditVerification: t.field({
    type: AuditVerificationRef,
    description:
      "Whether the whole audit trail verifies now (as `action-engine audit verify` does): chains and signed checkpoints (analysts and admins). The counts are the caller's space's own; a result is reused for up to 30 s.",
    authScopes: { readsAudit: true },
    resolve: async (_root, _args, ctx) => {
      const now = Date.now();
      let cache = caches.get(ctx.app.db);
      if (!cache) caches.set(ctx.app.db, (cache = { verification: null, spaces: new Map() }));
      const c = cache;
      // One verification reads the whole table: callers share it for a while instead of each starting one.
      let verification = c.verification;
      if (!verification || now - verification.at > VERIFICATION_CACHE_MS) {
        verification = c.verification = { at: now, result: verifyAuditLog(ctx.app.db) };
        verification.result.catch(() => {
          c.verification = null;
        });
      }
      const spaceId = ctx.principal!.spaceId;
      let counts = c.spaces.get(spaceId);
      if (!counts || now - counts.at > VERIFICATION_CACHE_MS) {
        counts = { at: now, result: countSpaceEntries(ctx.app.db, spaceId) };
        c.spaces.set(spaceId, counts);
        counts.result.catch(() => c.spaces.delete(spaceId));
      }
      const [result, own] = await Promise.all([verification.result, counts.result]);
      // Only whether it verifies and why not: which chain broke, and how busy other spaces are,
      // are not this caller's to see (the counts are of its own space's entries).
      const problem = result.ok
        ? null
        : !result.chains.ok
          ? `An audit chain does not verify (${result.chains.firstBad?.reason ?? 'unknown reason'}).`
          : 'The signed checkpoints do not match the audit entries.';
      return {
        ok: result.ok,
        entriesChecked: own.total,
        checkpoints: result.seal.checkpoints,
        sealed: own.total - own.unsealed,
        unsealed: own.unsealed,
        problem,
      };
    },
  }),
}));

/** The space's audit entries, and those after the newest checkpoint (not sealed yet). */
async function countSpaceEntries(db: GraphQLContextDb, spaceId: string): Promise<{ total: number; unsealed: number }> {
  const [row] = await db.$queryRaw<Array<{ total: bigint; unsealed: bigint }>>`
    WITH last AS (SELECT "lastTxid", "lastId" FROM "AuditCheckpoint" ORDER BY "id" DESC LIMIT 1)
    SELECT count(*) AS total,
      count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM last) OR (e."txid", e."id") > (SELECT "lastTxid", "lastId" FROM last)) AS unsealed
    FROM "AuditEntry" e WHERE e."spaceId" = ${spaceId}::uuid`;
  return { total: Number(row?.total ?? 0), unsealed: Number(row?.unsealed ?? 0) };
}

type GraphQLContextDb = Parameters<typeof verifyAuditLog>[0];
