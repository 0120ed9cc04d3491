import { BUILT_IN_ACTION_TYPES } from '../engine/action-types.js';
import type { ActionHandler, HandlerAction } from './types.js';

/** Document content quoted in a task beyond this is cut; the full payload stays on the action. */
const MAX_QUOTED_CHARS = 20_000;

/**
 * The last link of every chain: hands the action to a human operator as a `ManualTask` and
 * leaves it waiting until they complete the task. One OPEN task per action, however often the
 * action is executed (retries, recovered jobs, racing workers): the check and the insert run
 * in one transaction under an advisory lock on the action id.
 */
export const manualHandler: ActionHandler = {
  name: 'manual',
  kind: 'manual',
  types: BUILT_IN_ACTION_TYPES.map((t) => t.type),
  isConfigured: () => true,

  async execute(ctx) {
    const { action, services } = ctx;
    const summary = summarize(action);
    await services.db.$transaction(async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`manual-task:${action.id}`}, 0))`;
      const open = await tx.manualTask.findFirst({ where: { actionId: action.id, status: 'OPEN' }, select: { id: true } });
      if (open) return;
      await tx.manualTask.create({
        data: { spaceId: action.spaceId, actionId: action.id, executionId: ctx.executionId, instructions: instructionsFor(action) },
      });
    });
    return { status: 'waiting', message: `Waiting for an operator: ${summary}` };
  },
};

/** One line: what the operator is asked to do. */
function summarize(action: HandlerAction): string {
  const p = action.payload;
  switch (action.type) {
    case 'send_email':
      return `send "${str(p['subject'])}" to ${strings(p['to']).join(', ')}`;
    case 'create_calendar_event':
      return `create the event "${str(p['title'])}"`;
    case 'move_file':
      return `move ${str(p['from'])} to ${str(p['to'])}`;
    case 'create_document':
      return `write the document "${str(p['title'])}"`;
    case 'make_payment':
      return `pay ${amount(p['amount'])} ${str(p['currency'])} to ${str(p['recipient'])}`;
    case 'make_purchase':
      return `buy ${records(p['items']).length} item(s) from ${str(p['merchant'])}`;
    case 'order':
      return `place an order with ${str(p['provider'])}`;
    default:
      return `carry out a ${action.type} action`;
  }
}

/** Everything the operator needs, in plain text, from the action's (validated) payload. */
function instructionsFor(action: HandlerAction): string {
  const p = action.payload;
  const lines: string[] = [];
  const add = (label: string, value: unknown) => {
    const text = Array.isArray(value) ? strings(value).join(', ') : value === undefined || value === null ? '' : String(value);
    if (text) lines.push(`${label}: ${text}`);
  };

  switch (action.type) {
    case 'send_email':
      lines.push('Send this email on the user\'s behalf.');
      add('To', p['to']);
      add('Cc', p['cc']);
      add('Bcc', p['bcc']);
      add('Subject', p['subject']);
      lines.push('', quote(str(p['body'])));
      if (typeof p['html'] === 'string' && p['html']) lines.push('', '(An HTML version is in the action\'s payload.)');
      break;
    case 'create_calendar_event':
      lines.push(`Create this event in the user's calendar: "${str(p['title'])}".`);
      add('Starts', p['start_time']);
      add('Ends', p['end_time']);
      add('Time zone', p['timezone']);
      add('Location', p['location']);
      add('Attendees', p['attendees']);
      add('Description', p['description']);
      break;
    case 'move_file':
      lines.push(`Move the file "${str(p['from'])}" to "${str(p['to'])}" inside the user's folder (${action.spaceId}/${action.userId}).`);
      break;
    case 'create_document': {
      const folder = str(p['folder']);
      lines.push(
        `Write a ${str(p['format']) || 'markdown'} document titled "${str(p['title'])}" in the user's folder` +
          `${folder ? ` under "${folder}"` : ''} (${action.spaceId}/${action.userId}), with this content:`,
        '',
        quote(str(p['content'])),
      );
      break;
    }
    case 'make_payment':
      lines.push(`Pay ${amount(p['amount'])} ${str(p['currency'])} to ${str(p['recipient'])}.`);
      add('Memo', p['memo']);
      break;
    case 'make_purchase': {
      const items = records(p['items']).map((i) => {
        const price = typeof i['price'] === 'number' ? ` — ${amount(i['price'])}` : '';
        return `${quantity(i['quantity'])} × ${str(i['name'])}${price}`;
      });
      lines.push(`Buy from ${str(p['merchant'])}: ${items.join('; ')}; total ${amount(p['total'])} ${str(p['currency'])}.`);
      break;
    }
    case 'order': {
      const items = records(p['items']);
      const described = items.map((i) => {
        const mods = strings(i['modifications']);
        return `${quantity(i['quantity'])} × ${str(i['name'])}${mods.length ? ` (${mods.join(', ')})` : ''} — ${amount(i['price'])}`;
      });
      const total = items.reduce((sum, i) => sum + num(i['price']) * (typeof i['quantity'] === 'number' ? i['quantity'] : 1), 0);
      lines.push(`Place this order with ${str(p['provider'])}: ${described.join('; ')}; total ${amount(total)}.`);
      const phone = str(p['customer_phone']);
      if (p['customer_name'] || phone) add('Customer', [str(p['customer_name']), phone ? `(${phone})` : ''].filter(Boolean).join(' '));
      add('Pickup', p['pickup_time']);
      add('Special instructions', p['special_instructions']);
      break;
    }
    default:
      lines.push(`Carry out this ${action.type} action:`, '', JSON.stringify(p, null, 2));
  }
  lines.push('', `Action ${action.id} (${action.type}) for user ${action.userId}. Complete this task with the outcome when done.`);
  return lines.join('\n');
}

function quote(text: string): string {
  if (text.length <= MAX_QUOTED_CHARS) return text;
  return `${text.slice(0, MAX_QUOTED_CHARS)}\n… (cut at ${MAX_QUOTED_CHARS} characters; the full text is in the action's payload)`;
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : value === undefined || value === null ? '' : String(value);
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

function amount(value: unknown): string {
  return num(value).toFixed(2);
}

function quantity(value: unknown): number {
  return typeof value === 'number' ? value : 1;
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

function records(value: unknown): Array<Record<string, unknown>> {
  return Array.isArray(value) ? value.filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null) : [];
}
