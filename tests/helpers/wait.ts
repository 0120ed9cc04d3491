import { setTimeout as sleep } from 'node:timers/promises';
import type { App } from '../../src/app.js';

type Probed<T> = T | null | undefined | false;

/**
 * Calls `probe` every `intervalMs` until it returns something truthy, and returns that.
 * Throws `timed out waiting for <what>` when `timeoutMs` have passed (after one last probe).
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<Probed<T>> | Probed<T>,
  timeoutMs = 15_000,
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * Reads the action's row until its status is `statuses` (or one of them), and returns it with its
 * executions. Throws, naming the status it stayed in and its executions, after `timeoutMs`.
 */
export async function waitForActionStatus(db: App['db'], id: string, statuses: string | string[], timeoutMs = 15_000) {
  const wanted = typeof statuses === 'string' ? [statuses] : statuses;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await db.action.findUniqueOrThrow({ where: { id }, include: { executions: true } });
    if (wanted.includes(row.status)) return row;
    if (Date.now() > deadline) {
      const executions = JSON.stringify(row.executions.map((e) => [e.handler, e.status, e.error]));
      throw new Error(`action ${id} is ${row.status}, not ${wanted.join('|')}, after ${timeoutMs} ms; executions: ${executions}`);
    }
    await sleep(30);
  }
}
