import type { SafetyRule as SafetyRuleRow } from '../generated/prisma/client.js';
import { appendAuditEntry, type SafetyRuleState } from '../engine/audit.js';
import { compileCondition, ConditionError } from '../engine/conditions.js';
import { checkRuleEscalation, parseEscalationTarget } from '../engine/escalation.js';
import { InvalidConditionError, InvalidInputError, NotFoundError } from '../engine/errors.js';
import { canReadUser } from '../engine/policy.js';
import { isReversible } from '../engine/rollback.js';
import { effectiveRules, ruleKey } from '../engine/safety.js';
import { describeChain } from '../handlers/index.js';
import { builder } from './builder.js';
import { asPayload, UserError, type UserErrorShape } from './user-error.js';
import { approvalRequestQuota } from '../engine/quota.js';

const SafetyRuleKindEnum = builder.enumType('SafetyRuleKind', {
  values: ['BLOCKED', 'REQUIRES_APPROVAL', 'REQUIRES_KYC', 'RATE_LIMIT'] as const,
});

const SafetyRule = builder.prismaObject('SafetyRule', {
  fields: (t) => ({
    id: t.exposeID('id'),
    ruleKey: t.exposeString('ruleKey'),
    actionType: t.exposeString('actionType'),
    kind: t.expose('kind', { type: SafetyRuleKindEnum }),
    limit: t.exposeInt('limit', { nullable: true }),
    windowSeconds: t.exposeInt('windowSeconds', { nullable: true }),
    enabled: t.exposeBoolean('enabled'),
    description: t.exposeString('description', { nullable: true }),
    condition: t.exposeString('condition', {
      nullable: true,
      description: 'A CEL expression over payload, type, user and now; the rule applies only where it is true (or cannot be evaluated). Null: always.',
    }),
    approvalsRequired: t.exposeInt('approvalsRequired', { nullable: true, description: 'REQUIRES_APPROVAL: distinct approvers needed (null: 1).' }),
    graceSeconds: t.exposeInt('graceSeconds', {
      nullable: true,
      description: 'For a type that cannot be undone: approved actions wait this long, cancellable, before they run (the largest of the rules and GRACE_SECONDS applies).',
    }),
    escalateAfterMinutes: t.exposeInt('escalateAfterMinutes', {
      nullable: true,
      description: 'REQUIRES_APPROVAL: when nobody has decided this many minutes after the request, escalateTo are asked as well. Null: never.',
    }),
    escalateTo: t.exposeStringList('escalateTo', {
      description: 'Email addresses or user handles of the space asked when the request escalates, each with an approval link of their own.',
    }),
    spaceId: t.exposeID('spaceId', { nullable: true, description: 'Null for a rule of every space (a default).' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

const RateLimitStatus = builder
  .objectRef<{ rule: string; current: number; limit: number; windowSeconds: number; resetsAt: Date }>('RateLimitStatus')
  .implement({
    fields: (t) => ({
      rule: t.exposeString('rule', { description: 'The rule\'s ruleKey.' }),
      current: t.exposeInt('current'),
      limit: t.exposeInt('limit'),
      windowSeconds: t.exposeInt('windowSeconds'),
      resetsAt: t.expose('resetsAt', { type: 'DateTime', description: 'When the oldest counted action leaves the window.' }),
    }),
  });

const ActionTypeInfo = builder
  .objectRef<{ type: string; description: string; payloadSchema: unknown; handlers: string[]; reversible: boolean }>('ActionTypeInfo')
  .implement({
    fields: (t) => ({
      type: t.exposeString('type'),
      description: t.exposeString('description'),
      payloadSchema: t.expose('payloadSchema', { type: 'JSON', description: 'JSON Schema (2020-12) of the payload.' }),
      handlers: t.exposeStringList('handlers', { description: 'The handler chain, in the order tried.' }),
      reversible: t.exposeBoolean('reversible', {
        description: 'Whether a COMPLETED action of this type can be rolled back: the type allows it and a handler of its chain can undo it.',
      }),
    }),
  });

/** Longest RATE_LIMIT window: 366 days. */
const MAX_RULE_WINDOW_SECONDS = 366 * 24 * 60 * 60;
/** Most actions a RATE_LIMIT rule may allow per window. */
const MAX_RULE_LIMIT = 1_000_000;

const SafetyRuleInput = builder.inputType('SafetyRuleInput', {
  fields: (t) => ({
    actionType: t.string({ required: true }),
    kind: t.field({ type: SafetyRuleKindEnum, required: true }),
    limit: t.int({ required: false, description: 'RATE_LIMIT: actions per window, per user (1 to 1,000,000).' }),
    windowSeconds: t.int({ required: false, description: 'RATE_LIMIT: the window, in seconds (1 to 31,622,400, i.e. 366 days).' }),
    enabled: t.boolean({ required: false, description: 'Default true; false switches a default rule off for this space.' }),
    description: t.string({ required: false }),
    approvalsRequired: t.int({
      required: false,
      description: 'REQUIRES_APPROVAL only: distinct approvers of the user needed (1 to 10; the requester never counts; one rejection rejects). The largest of the rules that apply is used.',
    }),
    graceSeconds: t.int({
      required: false,
      description: 'For a type that cannot be undone (send_email, payments, purchases): approved actions wait this long (0 to 86,400 s), cancellable, and the status says until when. The largest of the type\'s rules and GRACE_SECONDS applies.',
    }),
    escalateAfterMinutes: t.int({
      required: false,
      description:
        'REQUIRES_APPROVAL only: when nobody has decided this many minutes (1 to 10,080, one week) after the request, escalateTo are asked as well, each by an approval mail with a link that decides for them alone; the status and the audit (approval.escalated) say so. Needs escalateTo.',
    }),
    escalateTo: t.stringList({
      required: false,
      description: 'REQUIRES_APPROVAL only: up to 10 email addresses or handles of users of this space (mailed at their address). Needs escalateAfterMinutes.',
    }),
    condition: t.string({
      required: false,
      description:
        'A CEL expression over payload, type, user ({ id, handle, email, domain, kycStatus }) and now, e.g. `payload.amount > 100`: the rule applies only where it is true; one that fails at run time applies, and the action\'s status says so. Refused with INVALID_CONDITION (line and column) when it does not compile. Null or empty: always.',
    }),
  }),
});

const SafetyRulePayload = builder.objectRef<{ rule: SafetyRuleRow | null; errors: UserErrorShape[] }>('SafetyRulePayload').implement({
  fields: (t) => ({
    rule: t.field({ type: SafetyRule, nullable: true, resolve: (p) => p.rule }),
    errors: t.field({ type: [UserError], resolve: (p) => p.errors }),
  }),
});

builder.queryFields((t) => ({
  safetyRules: t.prismaField({
    type: ['SafetyRule'],
    description: 'The rules in force in the caller\'s space (defaults, and the space\'s own, which override them).',
    authScopes: { authenticated: true },
    args: { type: t.arg.string({ required: false }) },
    resolve: (query, _root, { type }, ctx) =>
      ctx.app.db.safetyRule.findMany({
        ...query,
        where: { OR: [{ spaceId: null }, { spaceId: ctx.principal!.spaceId }], ...(type ? { actionType: type } : {}) },
        orderBy: [{ actionType: 'asc' }, { ruleKey: 'asc' }],
      }),
  }),
  rateLimits: t.field({
    type: [RateLimitStatus],
    description: 'Current use of every rate limit on one user and action type; for a type that needs approval, also its approval-request limit (rule approval-requests:<type>).',
    authScopes: { authenticated: true },
    args: { userId: t.arg.id({ required: true, description: "The user's id or handle." }), type: t.arg.string({ required: true }) },
    resolve: async (_root, { userId, type }, ctx) => {
      const p = ctx.principal!;
      const user = await ctx.app.db.user.findFirst({ where: { id: String(userId), spaceId: p.spaceId }, select: { id: true, spaceId: true } });
      if (!user || !canReadUser(p, user)) throw new NotFoundError(`no user with id ${userId}`, ['userId']);
      ctx.app.engine.types.get(type);
      const inForce = effectiveRules(
        await ctx.app.db.safetyRule.findMany({ where: { actionType: type, OR: [{ spaceId: null }, { spaceId: p.spaceId }] } }),
        type,
        p.spaceId,
      );
      const rules = inForce.filter((r) => r.kind === 'RATE_LIMIT' && r.limit && r.windowSeconds);
      const windows = rules.map((r) => ({ limit: r.limit!, windowSeconds: r.windowSeconds! }));
      const statuses = (await ctx.app.engine.rateLimiter.status({ spaceId: p.spaceId, userId: user.id, type }, windows)).map((s, i) => ({
        ...s,
        rule: rules[i]!.ruleKey,
      }));
      // The approval-request limit (APPROVAL_REQUESTS_PER_HOUR) of a type that waits for a person.
      const needsApproval = inForce.some((r) => r.kind === 'REQUIRES_APPROVAL') || ctx.app.engine.types.get(type).humanApproval === true;
      const perHour = ctx.app.engine.config.approvalRequestsPerHour;
      if (needsApproval && perHour > 0) {
        const quota = approvalRequestQuota(p.spaceId, user.id, type, perHour);
        const [approvals] = await ctx.app.engine.rateLimiter.status(quota.subject, quota.windows);
        statuses.push({ ...approvals!, rule: `approval-requests:${type}` });
      }
      return statuses;
    },
  }),
  actionTypes: t.field({
    type: [ActionTypeInfo],
    description: 'The action types an agent may propose, with the JSON Schema of each payload.',
    authScopes: { authenticated: true },
    resolve: (_root, _args, ctx) =>
      ctx.app.engine.types.list().map((d) => ({
        type: d.type,
        description: d.description,
        payloadSchema: ctx.app.engine.types.jsonSchema(d.type),
        handlers: describeChain(ctx.app.handlers, d.type),
        reversible: isReversible(ctx.app.engine.types, ctx.app.handlers, d.type),
      })),
  }),
}));

builder.mutationFields((t) => ({
  upsertSafetyRule: t.field({
    type: SafetyRulePayload,
    description: "Create or change a rule for the admin's space; a rule in the same slot as a default overrides it there.",
    authScopes: { admin: true },
    args: { input: t.arg({ type: SafetyRuleInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      asPayload<{ rule: SafetyRuleRow | null }>(async () => {
        const p = ctx.principal!;
        ctx.app.engine.types.get(input.actionType);
        const isRate = input.kind === 'RATE_LIMIT';
        if (isRate && (input.windowSeconds == null || input.windowSeconds < 1 || input.windowSeconds > MAX_RULE_WINDOW_SECONDS)) {
          throw new InvalidInputError(
            `a RATE_LIMIT rule needs windowSeconds from 1 to ${MAX_RULE_WINDOW_SECONDS.toLocaleString('en-US')} (366 days), not ${input.windowSeconds ?? 'none'}`,
            ['input', 'windowSeconds'],
          );
        }
        if (isRate && (input.limit == null || input.limit < 1 || input.limit > MAX_RULE_LIMIT)) {
          throw new InvalidInputError(
            `a RATE_LIMIT rule needs limit from 1 to ${MAX_RULE_LIMIT.toLocaleString('en-US')} actions per window, not ${input.limit ?? 'none'}`,
            ['input', 'limit'],
          );
        }
        if (!isRate && (input.limit != null || input.windowSeconds != null)) {
          throw new InvalidInputError(`limit and windowSeconds apply to RATE_LIMIT rules only, not ${input.kind}`, [
            'input',
            input.limit != null ? 'limit' : 'windowSeconds',
          ]);
        }
        const condition = input.condition?.trim() ? input.condition : null;
        if (condition !== null) {
          try {
            compileCondition(condition);
          } catch (error) {
            if (!(error instanceof ConditionError)) throw error;
            throw new InvalidConditionError(`condition: ${error.message}`, ['input', 'condition']);
          }
        }
        if (input.graceSeconds != null && (input.graceSeconds < 0 || input.graceSeconds > 86_400)) {
          throw new InvalidInputError(`graceSeconds must be from 0 to 86,400, not ${input.graceSeconds}`, ['input', 'graceSeconds']);
        }
        if (input.approvalsRequired != null && (input.kind !== 'REQUIRES_APPROVAL' || input.approvalsRequired < 1 || input.approvalsRequired > 10)) {
          throw new InvalidInputError(
            input.kind !== 'REQUIRES_APPROVAL' ? `approvalsRequired applies to REQUIRES_APPROVAL rules only, not ${input.kind}` : `approvalsRequired must be from 1 to 10, not ${input.approvalsRequired}`,
            ['input', 'approvalsRequired'],
          );
        }
        const escalation = checkRuleEscalation(input);
        if (escalation.escalateTo.length) {
          const handles = escalation.escalateTo.filter((entry) => parseEscalationTarget(entry)?.kind === 'handle');
          const known = new Set(
            (await ctx.app.db.user.findMany({ where: { spaceId: p.spaceId, handle: { in: handles } }, select: { handle: true } })).map((u) => u.handle),
          );
          const unknown = handles.find((h) => !known.has(h));
          if (unknown !== undefined) {
            throw new InvalidInputError(`escalateTo names "${unknown}", which is not an email address nor the handle of a user of this space`, [
              'input',
              'escalateTo',
              String((input.escalateTo ?? []).findIndex((entry) => entry.trim() === unknown)),
            ]);
          }
        }
        const fields = {
          ...escalation,
          condition,
          approvalsRequired: input.approvalsRequired ?? null,
          graceSeconds: input.graceSeconds ?? null,
          spaceId: p.spaceId,
          actionType: input.actionType,
          kind: input.kind,
          limit: isRate ? input.limit! : null,
          windowSeconds: isRate ? input.windowSeconds! : null,
          enabled: input.enabled ?? true,
          description: input.description ?? null,
        };
        const key = ruleKey(fields);
        const rule = await ctx.app.db.$transaction(async (tx) => {
          // Row lock first, so `before` is what this write replaces even when admins race.
          await tx.$executeRaw`SELECT 1 FROM "SafetyRule" WHERE "ruleKey" = ${key} FOR UPDATE`;
          const previous = await tx.safetyRule.findUnique({ where: { ruleKey: key } });
          const saved = await tx.safetyRule.upsert({ where: { ruleKey: key }, create: { ruleKey: key, ...fields }, update: fields });
          const state = (r: SafetyRuleRow): SafetyRuleState => ({
            limit: r.limit,
            windowSeconds: r.windowSeconds,
            enabled: r.enabled,
            description: r.description,
            condition: r.condition,
            graceSeconds: r.graceSeconds,
            approvalsRequired: r.approvalsRequired,
            escalateAfterMinutes: r.escalateAfterMinutes,
            escalateTo: r.escalateTo,
          });
          await appendAuditEntry(tx, {
            event: 'safety_rule.upserted',
            actor: p.id,
            ip: ctx.ip,
            userAgent: ctx.userAgent,
            spaceId: p.spaceId,
            data: {
              ruleKey: key,
              actionType: fields.actionType,
              kind: fields.kind,
              limit: fields.limit,
              windowSeconds: fields.windowSeconds,
              enabled: fields.enabled,
              before: previous ? state(previous) : null,
              after: state(saved),
            },
          });
          return saved;
        });
        // After commit: every process drops its cached rules for this type in this space.
        await ctx.app.configCache.invalidate({ kind: 'rules', spaceId: p.spaceId, actionType: fields.actionType });
        return { rule };
      }, { rule: null }),
  }),
}));
