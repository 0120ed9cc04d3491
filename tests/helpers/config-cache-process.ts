// A second process of the same deployment for the configuration cache test: the real
// composition root (createApp, with its own Redis connections and subscription), whose
// `configCache` the test queries over IPC. Run with `node --import tsx`, stdio with 'ipc'.
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';

export type CacheRequest =
  | { id: number; op: 'safetyRules'; spaceId: string; type: string }
  | { id: number; op: 'handlerConfigs'; spaceId: string; provider: string }
  | { id: number; op: 'userSafety'; spaceId: string; userId: string }
  | { id: number; op: 'stats' };

const config = loadConfig(process.env);
const logger = createLogger({ level: config.logLevel }, undefined);
const app = await createApp(config, logger, { migrate: false, sweepExpiredApprovals: false });
const cache = app.configCache;

process.on('message', (request: CacheRequest) => {
  const answer = async (): Promise<unknown> => {
    switch (request.op) {
      case 'safetyRules':
        return cache.safetyRules(request.spaceId, request.type);
      case 'handlerConfigs':
        return Object.fromEntries(await cache.handlerConfigs(request.spaceId, request.provider));
      case 'userSafety':
        return cache.userSafety(request.spaceId, request.userId);
      case 'stats':
        return null;
    }
  };
  answer().then(
    (result) => process.send!({ id: request.id, result, stats: cache.stats(), pid: process.pid }),
    (error: unknown) => process.send!({ id: request.id, error: String(error), stats: cache.stats(), pid: process.pid }),
  );
});

const stop = () => void app.close().then(() => process.exit(0), () => process.exit(1));
process.once('SIGTERM', stop);
process.once('disconnect', stop);

// Ready only once the change channel is subscribed: from then on no announcement is missed.
await cache.whenLive();
process.send!({ ready: true, pid: process.pid });
