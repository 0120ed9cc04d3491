import { print, type ExecutionResult } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import type { Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { statusChannel } from '../../src/engine/status-publisher.js';
import { statusEvent } from '../../src/engine/status-event.js';
import { graphql } from '../generated/gql.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const ActionStatus = graphql(`
  subscription ActionStatus($actionId: ID!) {
    actionStatus(actionId: $actionId) {
      actionId
      status
      message
      timestamp
      seq
      action {
        id
        type
      }
    }
  }
`);

const ActionEvents = graphql(`
  subscription ActionEvents($filter: ActionFilter) {
    actionEvents(filter: $filter) {
      actionId
      status
      message
      timestamp
      seq
      action {
        id
        type
      }
    }
  }
`);

const CreateForEvents = graphql(`
  mutation CreateForEvents($input: CreateActionInput!) {
    createAction(input: $input) {
      action {
        id
        status
      }
      errors {
        code
        message
      }
    }
  }
`);

const ApproveForEvents = graphql(`
  mutation ApproveForEvents($id: ID!) {
    approveAction(id: $id) {
      action {
        status
      }
      errors {
        code
        message
      }
    }
  }
`);

const RejectForEvents = graphql(`
  mutation RejectForEvents($id: ID!) {
    rejectAction(id: $id, reason: "not now") {
      action {
        status
      }
      errors {
        code
      }
    }
  }
`);

interface Event {
  actionId: string;
  status: string;
  message?: string | null;
  timestamp: string;
  seq: number;
  action: { id: string; type: string };
}

/** One running subscription and everything it has delivered so far. */
interface Watch {
  events: Event[];
  errors: string[];
  completed: boolean;
  /** Resolves once `check` holds; fails after `ms` naming what it waited for. */
  until(check: (w: Watch) => boolean, what: string, ms?: number): Promise<void>;
  stop(): void;
}

function watch<R extends Record<string, unknown>, V extends Record<string, unknown>>(
  client: Client,
  document: TypedDocumentNode<R, V>,
  variables: V,
): Watch {
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((l) => l());
  const w: Watch = {
    events: [],
    errors: [],
    completed: false,
    until(check, what, ms = 5000) {
      return new Promise((resolve, reject) => {
        const done = () => {
          listeners.delete(listener);
          clearTimeout(timer);
        };
        const listener = () => {
          if (check(w)) {
            done();
            resolve();
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify({ events: w.events.map((e) => [e.actionId.slice(0, 8), e.status, e.seq]), errors: w.errors, completed: w.completed })}`));
        }, ms);
        listeners.add(listener);
        listener();
      });
    },
    stop: () => undefined,
  };
  w.stop = client.subscribe<R>(
    { query: print(document), variables },
    {
      next(result: ExecutionResult<R>) {
        if (result.errors) w.errors.push(...result.errors.map((e) => e.message));
        const event = result.data && (Object.values(result.data)[0] as Event | undefined);
        if (event) w.events.push(event);
        notify();
      },
      error(error: unknown) {
        w.errors.push(
          error instanceof Error
            ? error.message
            : Array.isArray(error)
              ? error.map((e: { message: string }) => e.message).join('; ')
              : error && typeof error === 'object' && 'code' in error
                ? `${String(error.code)}: ${String((error as { reason?: unknown }).reason)}`
                : String(error),
        );
        w.completed = true;
        notify();
      },
      complete() {
        w.completed = true;
        notify();
      },
    },
  );
  return w;
}

const seen = (w: Watch, actionId: string, status: string) => w.events.some((e) => e.actionId === actionId && e.status === status);
const of = (w: Watch, actionId: string) => w.events.filter((e) => e.actionId === actionId);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let t: TestServer;
const keys = {} as Record<'agent' | 'approver' | 'admin' | 'bobAgent' | 'otherAgent' | 'otherApprover' | 'initechAgent' | 'initechApprover', string>;
const spaces = {} as Record<'acme' | 'initech', string>;

beforeAll(async () => {
  t = await startTestServer();
  const make = async (name: keyof typeof keys, role: 'AGENT' | 'APPROVER' | 'ADMIN', space: string, user?: string) => {
    const k = await createApiKey(t.app.db, { role, space, user, email: user ? `${user}@example.com` : undefined });
    keys[name] = k.key;
    return k;
  };
  spaces.acme = (await make('agent', 'AGENT', 'acme', 'alice')).spaceId;
  await make('approver', 'APPROVER', 'acme', 'alice');
  await make('admin', 'ADMIN', 'acme');
  await make('bobAgent', 'AGENT', 'acme', 'bob');
  await make('otherAgent', 'AGENT', 'globex', 'carol');
  await make('otherApprover', 'APPROVER', 'globex', 'carol');
  spaces.initech = (await make('initechAgent', 'AGENT', 'initech', 'dave')).spaceId;
  await make('initechApprover', 'APPROVER', 'initech', 'dave');
});
afterAll(async () => {
  await t?.close();
});

const payloads = {
  move_file: { from: 'inbox/a.txt', to: 'archive/a.txt' },
  create_document: { title: 'Notes', content: '# Notes' },
};

async function create(server: TestServer, key: string, type: keyof typeof payloads): Promise<string> {
  const out = (await server.graphql(CreateForEvents, { input: { type, payload: payloads[type] } }, { apiKey: key })).data!.createAction;
  expect(out.errors).toEqual([]);
  return out.action!.id;
}

async function approve(server: TestServer, id: string): Promise<void> {
  const out = (await server.graphql(ApproveForEvents, { id }, { apiKey: keys.approver })).data!.approveAction;
  expect(out.errors).toEqual([]);
}

/**
 * actionEvents gives no first event, so there is no telling when the server has subscribed:
 * create a sentinel action and re-publish its event until every watcher has seen it.
 */
async function proveLive(server: TestServer, agentKey: string, watchers: Watch[]): Promise<string> {
  const id = await create(server, agentKey, 'move_file');
  const action = await server.app.db.action.findUniqueOrThrow({ where: { id }, include: { statusUpdates: { orderBy: { seq: 'desc' }, take: 1 } } });
  const event = statusEvent(action, action.statusUpdates[0]!);
  const timer = setInterval(() => void server.app.engine.statusPublisher.publish([event]), 25);
  try {
    await Promise.all(watchers.map((w) => w.until((x) => of(x, id).length > 0, `sentinel ${id}`)));
  } finally {
    clearInterval(timer);
  }
  return id;
}

async function redisSubscribers(space: keyof typeof spaces): Promise<number> {
  const [, count] = (await t.app.redis.call('PUBSUB', 'NUMSUB', statusChannel(t.app.config.redisPrefix, spaces[space]))) as [string, number];
  return count;
}

async function waitFor(check: () => Promise<boolean>, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('actionStatus', () => {
  it('gives the current state first, then each change in order', async () => {
    const id = await create(t, keys.agent, 'move_file');
    const w = watch(t.wsClient({ apiKey: keys.agent }), ActionStatus, { actionId: id });
    await w.until((x) => x.events.length > 0, 'the current state');
    expect(w.events[0]).toMatchObject({ actionId: id, status: 'PENDING', action: { id, type: 'move_file' } });
    expect(Date.parse(w.events[0]!.timestamp)).not.toBeNaN();

    await approve(t, id);
    await w.until((x) => seen(x, id, 'APPROVED'), 'APPROVED');
    expect(w.events.slice(0, 2).map((e) => e.status)).toEqual(['PENDING', 'APPROVED']);
    expect(w.events[1]!.seq).toBeGreaterThan(w.events[0]!.seq);
    expect(w.errors).toEqual([]);
    expect(w.completed).toBe(false);
    w.stop();
  });

  it('starts a late subscriber at the decided status and completes after a terminal one', async () => {
    const id = await create(t, keys.agent, 'move_file');
    expect((await t.graphql(RejectForEvents, { id }, { apiKey: keys.approver })).data!.rejectAction.errors).toEqual([]);
    const w = watch(t.wsClient({ apiKey: keys.agent }), ActionStatus, { actionId: id });
    await w.until((x) => x.completed, 'completion');
    expect(w.events.map((e) => e.status)).toEqual(['REJECTED']);
    expect(w.errors).toEqual([]);
  });

  it('fills in an update whose publish was lost, from the database', async () => {
    const id = await create(t, keys.agent, 'move_file');
    const w = watch(t.wsClient({ apiKey: keys.agent }), ActionStatus, { actionId: id });
    await w.until((x) => x.events.length > 0, 'the current state');
    // Committed, never published (as after a failed PUBLISH).
    await t.app.db.$transaction(async (tx) => {
      const { statusSeq, status } = await tx.action.update({ where: { id }, data: { statusSeq: { increment: 1 } } });
      await tx.statusUpdate.create({ data: { actionId: id, seq: statusSeq, status, message: 'a note nobody published' } });
    });
    await approve(t, id);
    await w.until((x) => seen(x, id, 'APPROVED'), 'APPROVED');
    const events = w.events.slice(0, 3);
    expect(events.map((e) => e.status)).toEqual(['PENDING', 'PENDING', 'APPROVED']);
    expect(events[1]!.message).toBe('a note nobody published');
    expect(events.map((e) => e.seq - events[0]!.seq)).toEqual([0, 1, 2]);
    w.stop();
  });

  it('delivers an update whose publish was lost even when nothing follows it: the idle stream re-reads the database within a few seconds', async () => {
    const id = await create(t, keys.agent, 'move_file');
    const w = watch(t.wsClient({ apiKey: keys.agent }), ActionStatus, { actionId: id });
    await w.until((x) => x.events.length > 0, 'the current state');
    // The last change of the action, committed and never published.
    await t.app.db.$transaction(async (tx) => {
      const { statusSeq } = await tx.action.update({ where: { id }, data: { status: 'CANCELLED', statusSeq: { increment: 1 } } });
      await tx.statusUpdate.create({ data: { actionId: id, seq: statusSeq, status: 'CANCELLED', message: 'cancelled, never published' } });
    });
    await w.until((x) => seen(x, id, 'CANCELLED'), 'CANCELLED from the database', 8000);
    expect(w.events.at(-1)!.message).toBe('cancelled, never published');
    w.stop();
  }, 15_000);

  it('refuses an action the caller may not read, and a caller without a key', async () => {
    const id = await create(t, keys.agent, 'move_file');
    for (const [key, actionId] of [
      [keys.otherApprover, id], // another space
      [keys.bobAgent, id], // same space, another user
      [keys.agent, '00000000-0000-4000-8000-000000000000'],
      [keys.agent, 'not-an-id'],
    ] as const) {
      const w = watch(t.wsClient({ apiKey: key }), ActionStatus, { actionId });
      await w.until((x) => x.completed, `refusal of ${actionId}`);
      expect(w.events).toEqual([]);
      expect(w.errors).toEqual([`no action with id ${actionId}`]);
    }
    const anonymous = watch(t.wsClient(), ActionStatus, { actionId: id });
    await anonymous.until((x) => x.completed, 'refusal without a key');
    expect(anonymous.events).toEqual([]);
    // Refused at connection_init (close 4401), before any subscription: see access.test.ts.
    expect(anonymous.errors).toEqual(['4401: Unauthorized: send {"authorization": "Bearer <API key>"} in connection_init']);
  });

  it('has no gap between reading the current state and live events (subscribe racing approve)', async () => {
    const client = t.wsClient({ apiKey: keys.agent });
    // Widen the race on purpose: hold the Redis SUBSCRIBE back (odd rounds) or hold its
    // acknowledgement while events already flow in (even rounds), while the approval commits.
    const pubsub = t.app.pubsub;
    const subscribe = pubsub.subscribe.bind(pubsub);
    let hold = { ms: 0, before: true };
    pubsub.subscribe = async <T>(...args: Parameters<typeof pubsub.subscribe<T>>) => {
      const { ms, before } = hold;
      if (before) await sleep(ms);
      const subscriptionId = await subscribe<T>(...args);
      if (!before) await sleep(ms);
      return subscriptionId;
    };
    try {
      for (let round = 0; round < 10; round++) {
        hold = { ms: 10 + 10 * (round >> 1), before: round % 2 === 1 };
        const id = await create(t, keys.agent, 'move_file');
        const w = watch(client, ActionStatus, { actionId: id });
        await approve(t, id);
        await w.until((x) => seen(x, id, 'APPROVED'), `APPROVED in round ${round}`);
        const seqs = w.events.map((e) => e.seq);
        expect(['PENDING', 'APPROVED']).toContain(w.events[0]!.status);
        // Strictly consecutive: nothing twice, nothing skipped.
        expect(seqs, `round ${round}`).toEqual(seqs.map((_, i) => seqs[0]! + i));
        expect(w.errors).toEqual([]);
        w.stop();
      }
    } finally {
      pubsub.subscribe = subscribe;
    }
  });

  it('releases the Redis subscription when the client completes, disconnects, or the stream ends', async () => {
    expect(await redisSubscribers('initech')).toBe(0);
    const id = await create(t, keys.initechAgent, 'move_file');

    const first = watch(t.wsClient({ apiKey: keys.initechAgent }), ActionStatus, { actionId: id });
    await first.until((x) => x.events.length > 0, 'the current state');
    expect(await redisSubscribers('initech')).toBe(1);
    first.stop();
    await waitFor(async () => (await redisSubscribers('initech')) === 0, 'unsubscribe after complete');

    // Waiting on an event that never comes: the stream must still let go at once.
    const client = t.wsClient({ apiKey: keys.initechAgent });
    const idle = watch(client, ActionEvents, {});
    await waitFor(async () => (await redisSubscribers('initech')) === 1, 'subscribe');
    await client.dispose();
    await waitFor(async () => (await redisSubscribers('initech')) === 0, 'unsubscribe after disconnect');
    expect(idle.errors).toEqual([]);

    expect((await t.graphql(RejectForEvents, { id }, { apiKey: keys.initechApprover })).data!.rejectAction.errors).toEqual([]);
    const ended = watch(t.wsClient({ apiKey: keys.initechAgent }), ActionStatus, { actionId: id });
    await ended.until((x) => x.completed, 'completion');
    await waitFor(async () => (await redisSubscribers('initech')) === 0, 'unsubscribe after the terminal status');
  });
});

describe('actionEvents', () => {
  it('streams what the caller may see, filtered, and nothing of another space', async () => {
    const approverAll = watch(t.wsClient({ apiKey: keys.approver }), ActionEvents, {});
    const admin = watch(t.wsClient({ apiKey: keys.admin }), ActionEvents, {});
    const movesOnly = watch(t.wsClient({ apiKey: keys.approver }), ActionEvents, { filter: { type: ['move_file'] } });
    const other = watch(t.wsClient({ apiKey: keys.otherApprover }), ActionEvents, {});
    const sentinels = [await proveLive(t, keys.agent, [approverAll, admin, movesOnly]), await proveLive(t, keys.otherAgent, [other])];

    const bobs = await create(t, keys.bobAgent, 'create_document');
    const move = await create(t, keys.agent, 'move_file');
    const doc = await create(t, keys.agent, 'create_document');
    await approve(t, move);

    await approverAll.until((x) => seen(x, move, 'APPROVED'), 'the approval');
    await movesOnly.until((x) => seen(x, move, 'APPROVED'), 'the approval (filtered)');
    await admin.until((x) => seen(x, move, 'APPROVED'), 'the approval (admin)');
    const mine = (w: Watch) => w.events.filter((e) => !sentinels.includes(e.actionId)).map((e) => [e.action.type, e.status]);
    // One channel per space, published in commit order: what came before the approval is all there is.
    expect(mine(approverAll)).toEqual([
      ['move_file', 'PENDING'],
      ['create_document', 'APPROVED'],
      ['move_file', 'APPROVED'],
    ]);
    expect(of(approverAll, doc).map((e) => e.status)).toEqual(['APPROVED']);
    expect(of(approverAll, bobs)).toEqual([]);
    expect(mine(movesOnly)).toEqual([
      ['move_file', 'PENDING'],
      ['move_file', 'APPROVED'],
    ]);
    expect(of(admin, bobs).map((e) => e.status)).toEqual(['APPROVED']);
    expect(of(admin, move).map((e) => e.seq)).toEqual(of(approverAll, move).map((e) => e.seq));

    await sleep(300);
    expect(other.events.every((e) => sentinels.includes(e.actionId))).toBe(true);
    expect([approverAll, admin, movesOnly, other].flatMap((w) => w.errors)).toEqual([]);
    for (const w of [approverAll, admin, movesOnly, other]) w.stop();
  });
});

describe('across processes', () => {
  it('delivers to a subscriber on server A what happened through server B', async () => {
    const b = await startTestServer({ database: 'from-env', env: { DATABASE_URL: t.app.config.databaseUrl! }, redisPrefix: t.app.config.redisPrefix });
    try {
      const events = watch(t.wsClient({ apiKey: keys.approver }), ActionEvents, { filter: { type: ['move_file'] } });
      const sentinel = await proveLive(b, keys.agent, [events]);

      const id = await create(b, keys.agent, 'move_file');
      await events.until((x) => seen(x, id, 'PENDING'), 'creation through B');
      const status = watch(t.wsClient({ apiKey: keys.agent }), ActionStatus, { actionId: id });
      await status.until((x) => x.events.length > 0, 'the current state');
      await approve(b, id);
      await status.until((x) => seen(x, id, 'APPROVED'), 'approval through B (actionStatus)');
      await events.until((x) => seen(x, id, 'APPROVED'), 'approval through B (actionEvents)');
      expect(status.events.map((e) => e.status).slice(0, 2)).toEqual(['PENDING', 'APPROVED']);
      expect(events.events.filter((e) => e.actionId !== sentinel).map((e) => e.status)).toEqual(['PENDING', 'APPROVED']);
      status.stop();
      events.stop();
    } finally {
      await b.close();
    }
  });
});
