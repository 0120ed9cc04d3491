import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type ServerNotification,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { App } from '../app.js';
import type { Principal } from '../context.js';
import type { Action } from '../generated/prisma/client.js';
import { cancelAction } from '../engine/approvals.js';
import { createAction } from '../engine/create-action.js';
import type { Actor } from '../engine/deps.js';
import { eachRefusal, EngineError, InvalidInputError, NotFoundError, RateLimitedError, UnavailableError } from '../engine/errors.js';
import { UUID } from '../engine/ids.js';
import { briefError, unavailableError } from '../engine/infra-errors.js';
import { assertReadable } from '../engine/policy.js';
import { ACTION_STATUSES, isTerminal, type ActionStatus } from '../engine/statuses.js';
import { describeAction } from '../mail/approval-email.js';
import { waitForStatus, type StatusStep } from './wait.js';

/** Who is calling, as the transport knows it. */
export interface McpCaller {
  /**
   * The principal of the caller's API key, checked again for every request (a key revoked
   * while a stdio session runs stops working within seconds). Throws a FORBIDDEN `EngineError`
   * when the key is no longer valid.
   */
  principal(): Promise<Principal>;
  ip: string | null;
  userAgent: string | null;
}

/** The most a wait_for_action call may wait (the issue: bounded by a timeout argument). */
export const MAX_WAIT_SECONDS = 300;
const DEFAULT_WAIT_SECONDS = 60;
/**
 * wait_for_action calls one API key may have running at once in one process: each holds a
 * request, a Redis subscription and a timer for up to MAX_WAIT_SECONDS, so an agent looping on
 * waits cannot tie up the server. One more is refused with RATE_LIMITED.
 */
export const MAX_WAITS_PER_KEY = 10;
/** Waits running now, per principal, per app (process). */
const runningWaits = new WeakMap<App, Map<string, number>>();

/** wait_for_action calls the principal has running now in this process (for tests and metrics). */
export function runningWaitsOf(app: App, principalId: string): number {
  return runningWaits.get(app)?.get(principalId) ?? 0;
}

/** Runs `wait` holding one of the principal's {@link MAX_WAITS_PER_KEY} wait slots; RATE_LIMITED when none is free. */
async function withWaitSlot<T>(app: App, principalId: string, wait: () => Promise<T>): Promise<T> {
  let waits = runningWaits.get(app);
  if (!waits) runningWaits.set(app, (waits = new Map()));
  const running = waits.get(principalId) ?? 0;
  if (running >= MAX_WAITS_PER_KEY) {
    throw new RateLimitedError(`this API key already has ${MAX_WAITS_PER_KEY} wait_for_action calls running (the most at once); let one end, or poll with get_action`, 5);
  }
  waits.set(principalId, running + 1);
  try {
    return await wait();
  } finally {
    const left = (waits.get(principalId) ?? 1) - 1;
    if (left > 0) waits.set(principalId, left);
    else waits.delete(principalId);
  }
}

/** Tools that are not action types. Names an action type can never take (types use the same alphabet). */
const GET_ACTION = 'get_action';
const WAIT_FOR_ACTION = 'wait_for_action';
const CANCEL_ACTION = 'cancel_action';

const idArg = z.string().max(100).meta({ description: 'The action id (a UUID), as a create tool returned it.' });
const GetArgs = z.strictObject({ id: idArg });
const WaitArgs = z.strictObject({
  id: idArg,
  timeoutSeconds: z
    .number()
    .min(1)
    .max(MAX_WAIT_SECONDS)
    .optional()
    .meta({ description: `How long to wait at most, in seconds (1 to ${MAX_WAIT_SECONDS}; default ${DEFAULT_WAIT_SECONDS}). On timeout the current state is returned, not an error.` }),
  until: z
    .array(z.enum(ACTION_STATUSES))
    .min(1)
    .optional()
    .meta({ description: 'Statuses to wait for. Default: COMPLETED or any status the action never leaves (REJECTED, FAILED, ROLLED_BACK, BLOCKED, EXPIRED, CANCELLED).' }),
});
const CancelArgs = z.strictObject({
  id: idArg,
  reason: z.string().max(1000).optional().meta({ description: 'Why the request is withdrawn (kept in the audit log).' }),
});

const DEFAULT_UNTIL: ReadonlySet<ActionStatus> = new Set(ACTION_STATUSES.filter((s) => s === 'COMPLETED' || isTerminal(s)));

/** The JSON Schema an MCP tool publishes: without the `$schema` line (2020-12 is MCP's default dialect). */
function toolSchema(schema: unknown): Tool['inputSchema'] {
  const { $schema: _ignored, ...rest } = schema as Record<string, unknown>;
  return { ...rest, type: 'object' } as Tool['inputSchema'];
}

function humanTitle(type: string): string {
  const words = type.replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

const SERVER_INSTRUCTIONS = [
  'Action Engine stands between you and the real world. Each action type is a tool; its arguments are the payload.',
  'A call answers at once: COMPLETED work is not waited for. APPROVED means queued (call wait_for_action to follow it);',
  'PENDING means a person must approve first: you are told how they are asked, and you can never approve yourself —',
  'call wait_for_action (bounded by timeoutSeconds) to learn the decision. Refusals (BLOCKED, RATE_LIMITED, INVALID_PAYLOAD,',
  'KYC_REQUIRED, …) come back as tool errors with the engine\'s code. Pass `_meta.idempotencyKey` on a create call to make a retry safe.',
].join(' ');

/**
 * One MCP server for one caller (an API key). The low-level SDK `Server` is used rather than
 * `McpServer` because the tools publish ready-made JSON Schemas (the same as `actionTypes`) and
 * validation must be the engine's own (so a bad payload comes back as INVALID_PAYLOAD naming the
 * field), which `McpServer.registerTool` would replace with its own zod check.
 */
export function createMcpServer(app: App, caller: McpCaller): Server {
  const server = new Server(
    { name: 'action-engine', title: 'Action Engine', version: '0.1.0' },
    { capabilities: { tools: { listChanged: false } }, instructions: SERVER_INSTRUCTIONS },
  );
  const deps = app.engine;

  const actorOf = (principal: Principal): Actor => {
    const client = server.getClientVersion();
    const userAgent = caller.userAgent ?? (client ? `mcp-client ${client.name}/${client.version}`.slice(0, 200) : null);
    return { id: principal.id, ip: caller.ip, userAgent };
  };

  server.setRequestHandler(ListToolsRequestSchema, async () => {
    const principal = await principalOrProtocolError(caller);
    const tools: Tool[] = [];
    // Only agents create actions (createAction refuses everyone else): other keys see the read and cancel tools.
    if (principal.role === 'AGENT') {
      for (const definition of deps.types.list()) {
        if (definition.type === GET_ACTION || definition.type === WAIT_FOR_ACTION || definition.type === CANCEL_ACTION) continue;
        const approval = definition.humanApproval ? ' Always waits for a person\'s approval before it runs.' : '';
        const undo = definition.reversible ? ' Can be rolled back once completed.' : ' Cannot be undone once it has run.';
        tools.push({
          name: definition.type,
          title: humanTitle(definition.type),
          description: `${definition.description}${approval}${undo} The engine's safety rules may block it, limit its rate or ask the user's approver first (then the call returns PENDING at once).`,
          inputSchema: toolSchema(deps.types.jsonSchema(definition.type)),
          annotations: {
            title: humanTitle(definition.type),
            readOnlyHint: false,
            destructiveHint: !definition.reversible,
            // Not idempotent: each call is a new action (unless the caller passes _meta.idempotencyKey).
            idempotentHint: false,
            openWorldHint: true,
          },
        });
      }
    }
    tools.push(
      {
        name: GET_ACTION,
        title: 'Get action',
        description: 'The current state of an action: status, latest status messages, executions and receipts.',
        inputSchema: toolSchema(z.toJSONSchema(GetArgs)),
        annotations: { title: 'Get action', readOnlyHint: true, openWorldHint: false },
      },
      {
        name: WAIT_FOR_ACTION,
        title: 'Wait for action',
        description:
          `Waits (at most timeoutSeconds, up to ${MAX_WAIT_SECONDS}) until the action reaches one of the statuses in until, sending a progress notification for every status update while it waits (when the request carries a progressToken). Returns the final or current state.`,
        inputSchema: toolSchema(z.toJSONSchema(WaitArgs)),
        annotations: { title: 'Wait for action', readOnlyHint: true, openWorldHint: false },
      },
      {
        name: CANCEL_ACTION,
        title: 'Cancel action',
        description: 'Withdraws a PENDING or APPROVED action before it runs (the requesting agent, the user\'s approvers and admins may).',
        inputSchema: toolSchema(z.toJSONSchema(CancelArgs)),
        annotations: { title: 'Cancel action', readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
      },
    );
    return { tools };
  });

  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const { name } = request.params;
    const args: unknown = request.params.arguments ?? {};
    const isTool = name === GET_ACTION || name === WAIT_FOR_ACTION || name === CANCEL_ACTION || deps.types.find(name) !== undefined;
    if (!isTool) throw new McpError(ErrorCode.InvalidParams, `unknown tool ${name.slice(0, 64)}`);
    try {
      const principal = await caller.principal();
      if (name === GET_ACTION) {
        const { id } = parseArgs(GetArgs, args);
        const action = await readAction(app, principal, id);
        return answer(await actionDetail(app, action), `${statusLine(app, action)}`);
      }
      if (name === CANCEL_ACTION) {
        const { id, reason } = parseArgs(CancelArgs, args);
        if (!UUID.test(id)) throw new NotFoundError(`no action with id ${id}`, ['id']);
        const action = await cancelAction(deps, principal, actorOf(principal), id, reason ?? null);
        return answer({ action: summary(app, action) }, `Cancelled: ${statusLine(app, action)}`);
      }
      if (name === WAIT_FOR_ACTION) {
        const { id, timeoutSeconds, until } = parseArgs(WaitArgs, args);
        const action = await readAction(app, principal, id);
        return await withWaitSlot(app, principal.id, async () => {
          const targets: ReadonlySet<ActionStatus> = until ? new Set(until) : DEFAULT_UNTIL;
          const progressToken = extra._meta?.progressToken;
          let progress = 0;
          const notify = async (status: ActionStatus, message: string | null) => {
            if (progressToken === undefined) return;
            const notification: ServerNotification = {
              method: 'notifications/progress',
              params: { progressToken, progress: ++progress, message: message ? `${status}: ${message}` : status },
            };
            // A client gone away must not fail the wait (its answer is lost anyway).
            await extra.sendNotification(notification).catch(() => {});
          };
          const steps: StatusStep[] = [];
          let outcome = { status: action.status, timedOut: false };
          if (!targets.has(action.status) && !isTerminal(action.status)) {
            const latest = await app.db.statusUpdate.findFirst({ where: { actionId: action.id }, orderBy: { seq: 'desc' }, select: { message: true } });
            await notify(action.status, latest?.message ?? null);
            outcome = await waitForStatus(app, action, {
              until: targets,
              status: action.status,
              afterSeq: action.statusSeq,
              deadline: Date.now() + (timeoutSeconds ?? DEFAULT_WAIT_SECONDS) * 1000,
              signal: extra.signal,
              onStep: async (step) => {
                steps.push(step);
                await notify(step.status, step.message);
              },
            });
          }
          const now = await readAction(app, principal, id);
          const text = outcome.timedOut
            ? `Still ${now.status} after ${timeoutSeconds ?? DEFAULT_WAIT_SECONDS} s (waiting for ${[...targets].join(' or ')}); call wait_for_action again to keep waiting. ${statusLine(app, now)}`
            : statusLine(app, now);
          return answer({ ...(await actionDetail(app, now)), timedOut: outcome.timedOut, updates: steps }, text);
        });
      }
      // An action type.
      const idempotencyKey = typeof extra._meta?.idempotencyKey === 'string' ? extra._meta.idempotencyKey : null;
      const result = await createAction(deps, principal, actorOf(principal), { type: name, payload: args, idempotencyKey });
      if (result.errors.length) return refusal(result.errors, result.action ? summary(app, result.action) : undefined);
      const action = result.action!;
      if (action.status === 'PENDING') {
        const approval = await approvalNote(app, action);
        return answer(
          { action: summary(app, action), approval },
          `Waiting for approval (PENDING), action ${action.id}: ${headline(app, action)}. ${approval.how} Call wait_for_action with this id to learn the decision; you cannot approve it yourself.`,
        );
      }
      return answer(
        { action: summary(app, action) },
        `${statusLine(app, action)} Call wait_for_action with id ${action.id} to follow it to the end.`,
      );
    } catch (error) {
      if (error instanceof EngineError) return refusal([error]);
      const unavailable = unavailableError(error);
      if (unavailable) {
        app.logger.warn({ err: briefError(error), tool: name }, 'MCP tool call met an unavailable dependency');
        return refusal([unavailable]);
      }
      app.logger.error({ err: error, tool: name }, 'unexpected error in an MCP tool call');
      return { isError: true, content: [{ type: 'text', text: 'INTERNAL: the call failed unexpectedly; nothing more can be said here (see the server log).' }], structuredContent: { error: { code: 'INTERNAL', message: 'unexpected error' } } };
    }
  });

  return server;
}

async function principalOrProtocolError(caller: McpCaller): Promise<Principal> {
  try {
    return await caller.principal();
  } catch (error) {
    if (error instanceof EngineError) throw new McpError(ErrorCode.InvalidRequest, `${error.code}: ${error.message}`);
    throw error;
  }
}

/** Tool arguments checked with zod: the first problem named by its field, as INVALID_INPUT. */
function parseArgs<S extends z.ZodType>(schema: S, args: unknown): z.output<S> {
  const parsed = schema.safeParse(args);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.map(String);
  throw new InvalidInputError(`${field.length ? `${field.join('.')}: ` : ''}${issue.message}`, field);
}

async function readAction(app: App, principal: Principal, id: string): Promise<Action> {
  // Not a UUID: no such action (the same answer as for an id of another space).
  const action = UUID.test(id) ? await app.db.action.findUnique({ where: { id } }) : null;
  return assertReadable(principal, action, id);
}

function headline(app: App, action: Action): string {
  return describeAction(action.type, action.payload, { types: app.engine.types, maxTextLength: 200 }).headline;
}

function statusLine(app: App, action: Action): string {
  return `${action.status}: ${headline(app, action)} (action ${action.id})${action.error ? ` — ${action.error}` : ''}.`;
}

function summary(app: App, action: Action) {
  return {
    id: action.id,
    type: action.type,
    status: action.status,
    headline: headline(app, action),
    payload: action.payload,
    revision: action.revision,
    requiresApproval: action.requiresApproval,
    approvalsRequired: action.approvalsRequired,
    approvalExpiresAt: action.approvalExpiresAt?.toISOString() ?? null,
    scheduledFor: action.scheduledFor?.toISOString() ?? null,
    error: action.error,
    result: action.result ?? null,
    createdAt: action.createdAt.toISOString(),
    updatedAt: action.updatedAt.toISOString(),
  };
}

async function actionDetail(app: App, action: Action) {
  const [statusUpdates, executions, receipts] = await Promise.all([
    app.db.statusUpdate.findMany({ where: { actionId: action.id }, orderBy: { seq: 'desc' }, take: 20, select: { seq: true, status: true, message: true, createdAt: true } }),
    app.db.execution.findMany({ where: { actionId: action.id }, orderBy: { startedAt: 'asc' }, take: 50, select: { handler: true, attempt: true, status: true, error: true, startedAt: true, finishedAt: true } }),
    app.db.receipt.findMany({ where: { actionId: action.id }, orderBy: { createdAt: 'asc' }, select: { receiptNumber: true, handler: true, provider: true, externalRef: true, createdAt: true } }),
  ]);
  return {
    action: summary(app, action),
    statusUpdates: statusUpdates.reverse().map((u) => ({ seq: u.seq, status: u.status, message: u.message, timestamp: u.createdAt.toISOString() })),
    executions: executions.map((e) => ({ ...e, startedAt: e.startedAt.toISOString(), finishedAt: e.finishedAt?.toISOString() ?? null })),
    receipts: receipts.map((r) => ({ ...r, createdAt: r.createdAt.toISOString() })),
  };
}

/** How the person will be asked to decide a PENDING action. */
async function approvalNote(app: App, action: Action) {
  const user = await app.db.user.findUnique({ where: { id: action.userId }, select: { email: true, handle: true } });
  const definition = app.engine.types.find(action.type);
  const console = `${app.config.baseUrl}/console`;
  const byEmail = user?.email
    ? `An approval request was emailed to the user (${user.handle})${definition?.approvalNeedsCode ? ', with a one-time code in a second email' : ''}.`
    : `The user (${user?.handle ?? 'unknown'}) has no email address on file, so no email was sent.`;
  const quorum = action.approvalsRequired > 1 ? ` ${action.approvalsRequired} approvers must approve.` : '';
  return {
    email: Boolean(user?.email),
    console,
    approvalsRequired: action.approvalsRequired,
    expiresAt: action.approvalExpiresAt?.toISOString() ?? null,
    how: `${byEmail} An approver of the user can also approve or reject it in the console (${console}) or with the approveAction/rejectAction GraphQL mutations.${quorum}${action.approvalExpiresAt ? ` Without a decision it expires at ${action.approvalExpiresAt.toISOString()}.` : ''}`,
  };
}

function answer(structured: Record<string, unknown>, text: string): CallToolResult {
  return { content: [{ type: 'text', text }], structuredContent: structured };
}

/** Engine refusals as a tool error: the code and message of each (the field of a payload problem, the retry delay of a limit). */
function refusal(errors: EngineError[], action?: ReturnType<typeof summary>): CallToolResult {
  const items = errors.flatMap(eachRefusal).map((e) => ({
    code: e.code,
    message: e.message,
    field: e.field ?? null,
    ...(e instanceof RateLimitedError || e instanceof UnavailableError ? { retryAfterSeconds: e.retryAfterSeconds } : {}),
  }));
  const lines = items.map((i) => `${i.code}${i.field ? ` (${i.field.join('.')})` : ''}: ${i.message}${'retryAfterSeconds' in i ? ` — retry after ${i.retryAfterSeconds} s` : ''}`);
  if (action) lines.push(`The request was recorded as ${action.status} (action ${action.id}).`);
  return {
    isError: true,
    content: [{ type: 'text', text: lines.join('\n') }],
    structuredContent: { error: items[0], errors: items, ...(action ? { action } : {}) },
  };
}

