import { testCondition } from '../engine/condition-test.js';
import { eachRefusal, EngineError } from '../engine/errors.js';
import { builder } from './builder.js';
import { toUserError, UserError, type UserErrorShape } from './user-error.js';

interface ConditionTestShape {
  matches: boolean | null;
  evaluationError: string | null;
  line: number | null;
  column: number | null;
  errors: UserErrorShape[];
}

const ConditionTestRef = builder.objectRef<ConditionTestShape>('ConditionTest').implement({
  description: 'A safety rule\'s condition tried on a sample action, as it would run when such an action is created. Nothing is saved.',
  fields: (t) => ({
    matches: t.boolean({
      nullable: true,
      description:
        'Whether the rule would apply to this action: true when the condition is true, and also when it fails to evaluate (see evaluationError), as at run time; null when the request was refused (error).',
      resolve: (r) => r.matches,
    }),
    error: t.field({
      type: UserError,
      nullable: true,
      description: 'Why nothing was evaluated: UNKNOWN_TYPE, INVALID_CONDITION (the message gives line and column), INVALID_PAYLOAD (field names the payload field), NOT_FOUND (userId). The first of errors.',
      resolve: (r) => r.errors[0] ?? null,
    }),
    errors: t.field({
      type: [UserError],
      description: 'Every refusal: the condition\'s and each payload problem at once. Empty when the condition was evaluated.',
      resolve: (r) => r.errors,
    }),
    line: t.int({ nullable: true, description: 'INVALID_CONDITION: the line (from 1) where the condition goes wrong, when known.', resolve: (r) => r.line }),
    column: t.int({ nullable: true, description: 'INVALID_CONDITION: the column (from 1) where the condition goes wrong, when known.', resolve: (r) => r.column }),
    evaluationError: t.string({
      nullable: true,
      description: 'Why the condition could not be evaluated on this payload (a field it lacks, a result that is not true or false): at run time such a rule applies, and the action\'s status says why.',
      resolve: (r) => r.evaluationError,
    }),
  }),
});

builder.queryFields((t) => ({
  testCondition: t.field({
    type: ConditionTestRef,
    description:
      'Admins: tries a safety rule condition (CEL) on a sample payload of `type`, compiled and evaluated exactly as a rule\'s condition is when an action is created (variables payload — validated by the type\'s schema —, type, user, now). Writes nothing.',
    authScopes: { admin: true },
    args: {
      type: t.arg.string({ required: true }),
      condition: t.arg.string({ required: true }),
      payload: t.arg({ type: 'JSON', required: true }),
      userId: t.arg.id({ required: false, description: 'The user the sample action is for (id or handle); without one, `user` has empty fields and kycStatus NONE.' }),
    },
    resolve: async (_root, args, ctx) => {
      try {
        const result = await testCondition(ctx.app.engine, ctx.principal!, {
          type: args.type,
          condition: args.condition,
          payload: args.payload,
          userId: args.userId == null ? null : String(args.userId),
        });
        return { ...result, errors: result.errors.map(toUserError) };
      } catch (error) {
        if (!(error instanceof EngineError)) throw error;
        return { matches: null, evaluationError: null, line: null, column: null, errors: eachRefusal(error).map(toUserError) };
      }
    },
  }),
}));
