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

builder.queryFields((t) => ({
  auditVerification: t.field({
    type: AuditVerificationRef,
    description: 'Verifies the whole audit trail now (as `action-engine audit verify` does): chains and signed checkpoints (analysts and admins).',
    authScopes: { readsAudit: true },
    resolve: async (_root, _args, ctx) => {
      const result = await verifyAuditLog(ctx.app.db);
      // The reason only: which chain broke may be another space's, and is not this caller's to see.
      const problem = result.ok
        ? null
        : !result.chains.ok
          ? `An audit chain does not verify (${result.chains.firstBad?.reason ?? 'unknown reason'}).`
          : 'The signed checkpoints do not match the audit entries.';
      return {
        ok: result.ok,
        entriesChecked: result.chains.checked,
        checkpoints: result.seal.checkpoints,
        sealed: result.seal.sealed,
        unsealed: result.seal.unsealed,
        problem,
      };
    },
  }),
}));
