// A worker process for the crash test: the real app and worker, plus one test handler with a
// side effect that a repeat must not perform twice. Run with `node --import tsx`. With
// TEST_SERVE=1 it also serves the API (as `action-engine start` does), so that actions created
// through it run there (runs started here, see worker.ts).
import { existsSync } from 'node:fs';
import { appendFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { createLogger } from '../../src/logger.js';
import { createApiServer } from '../../src/server.js';
import { startWorker } from '../../src/worker.js';
import { sideEffectType } from './side-effect-type.js';

const effectsDir = process.env.TEST_EFFECTS_DIR!;

/**
 * Performs its effect once per idempotency key (a marker file) and then takes `ms` to finish; a
 * repeat finds the marker (`check`) and finishes at once.
 */
export const sideEffectHandler = defineHandler({
  name: 'test.side-effect',
  kind: 'api',
  types: [sideEffectType],
  repeat: 'check',
  async execute(ctx) {
    const marker = path.join(effectsDir, `${ctx.idempotencyKey.replace(/[^A-Za-z0-9-]/g, '_')}.done`);
    if (!existsSync(marker)) {
      await appendFile(path.join(effectsDir, 'effects.log'), `${ctx.action.id} pid=${process.pid}\n`);
      await writeFile(marker, String(process.pid));
      await sleep(ctx.payload.ms ?? 0);
    }
    return { status: 'completed', provider: 'test', data: { pid: process.pid } };
  },
});

const config = loadConfig(process.env);
const logger = createLogger({ level: config.logLevel });
const app = await createApp(config, logger, {
  migrate: false,
  sweepExpiredApprovals: false,
  extraHandlers: [sideEffectHandler],
  extraActionTypes: [sideEffectType],
});
// Lock and stalled check come from WORKER_LOCK_MS / WORKER_STALLED_CHECK_MS (defaults unless the test sets them).
const worker = startWorker(app);
if (process.env.TEST_SERVE === '1') {
  const port = await createApiServer(app).listen(0, '127.0.0.1');
  logger.info({ pid: process.pid, url: `http://127.0.0.1:${port}` }, 'test worker listening');
} else logger.info({ pid: process.pid }, 'test worker running');
process.once('SIGTERM', () => {
  void worker.close().then(() => app.close()).then(() => process.exit(0));
});
