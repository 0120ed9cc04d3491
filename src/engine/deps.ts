import type { Config } from '../config.js';
import type { Prisma, PrismaClient } from '../generated/prisma/client.js';
import type { Logger } from '../logger.js';
import type { Mailer } from '../mail/mailer.js';
import type { ActionTypeRegistry } from './action-types.js';
import type { ConfigCache } from './config-cache.js';
import type { PendingScopes } from './pending-scopes.js';
import type { RateLimiter } from './rate-limiter.js';
import type { ActionQueue } from './queue.js';
import type { SecretsBox } from './secrets.js';
import type { WebhookQueue } from './webhook-queue.js';
import type { ApprovalQueue } from './approval-jobs.js';
import type { Signer } from './signing.js';
import { briefError, isInfrastructureError } from './infra-errors.js';
import { TxEffects, type StatusPublisher } from './status-event.js';

/** What the engine's systems run on; built once by the composition root. */
export interface EngineDeps {
  db: PrismaClient;
  rateLimiter: RateLimiter;
  mailer: Mailer;
  logger: Logger;
  types: ActionTypeRegistry;
  config: Pick<Config, 'baseUrl' | 'approvalTtlSeconds' | 'approvalRequestsPerHour' | 'graceSeconds' | 'escalationMinuteMs'>;
  clock: () => Date;
  /** Where committed status updates go (live subscriptions). */
  statusPublisher: StatusPublisher;
  /** The execution queue. */
  queue: ActionQueue;
  /** Encrypts and decrypts handler secrets (AES-256-GCM). */
  secrets: SecretsBox;
  /**
   * This process's cache of safety rules, handler configurations and users (invalidated across
   * processes on Redis; entries expire after `CONFIG_CACHE_TTL_MS`).
   */
  configCache: ConfigCache;
  /** The engine's Ed25519 key: signs receipts (`signReceipt`) and audit checkpoints. */
  signer: Signer;
  /** The outbound webhook queue (one send job per endpoint); absent: deliveries wait for the sweeper. */
  webhooks?: WebhookQueue;
  /** Delayed jobs of PENDING actions (expiry, escalation); absent: only the expiry sweep expires them. */
  approvalJobs?: ApprovalQueue;
  /** PENDING actions as this process last wrote them (a decision need not read them first); absent: always read. */
  pendingScopes?: PendingScopes;
}

/**
 * Runs `fn` in one database transaction and publishes the status events it collected once
 * the transaction has committed (never before: a subscriber must not see an update that was
 * rolled back).
 */
export async function inTransaction<T>(
  deps: Pick<EngineDeps, 'db' | 'statusPublisher' | 'queue' | 'logger' | 'webhooks'>,
  fn: (tx: Prisma.TransactionClient, effects: TxEffects) => Promise<T>,
): Promise<T> {
  const effects = new TxEffects();
  const result = await deps.db.$transaction((tx) => fn(tx, effects));
  await applyEffects(deps, effects);
  return result;
}

export async function applyEffects(
  deps: Pick<EngineDeps, 'statusPublisher' | 'queue' | 'logger' | 'webhooks'>,
  effects: TxEffects,
  options: { awaitPublish?: boolean } = {},
): Promise<void> {
  // Each Redis call is bounded (REDIS_COMMAND_TIMEOUT_MS) and the three kinds run side by side,
  // so a request that committed answers within one timeout even while Redis is away.
  const enqueue = async () => {
    for (const action of effects.enqueue) {
      try {
        await deps.queue.enqueue(action);
      } catch (error) {
        // Committed as APPROVED but not queued: the reconciler finds it and queues it.
        deps.logger.error({ err: briefError(error), actionId: action.id }, 'could not enqueue an approved action; the reconciler will retry');
        if (isInfrastructureError(error)) return;
      }
    }
  };
  const dequeue = async () => {
    for (const id of effects.dequeue) {
      try {
        await deps.queue.remove(id);
      } catch (error) {
        // The worker sees the CANCELLED status and skips the job.
        deps.logger.warn({ err: briefError(error), actionId: id }, 'could not remove a cancelled job');
        if (isInfrastructureError(error)) return;
      }
    }
  };
  const publish = async () => {
    if (!effects.events.length) return;
    const published = deps.statusPublisher.publish(effects.events);
    // The worker does not wait for its events to reach Redis before going on: they go out in
    // order on one connection all the same, a lost one is caught up by subscribers (see
    // status-publisher.ts), and publish never throws.
    if (options.awaitPublish !== false) await published;
  };
  // Outbound webhooks: the deliveries are committed; nobody waits for their send job to be
  // queued (the action's path is never slowed by them), and a lost one is queued by the sweeper.
  if (effects.webhooks.length && deps.webhooks) {
    deps.webhooks.wake(effects.webhooks).catch((error: unknown) => {
      deps.logger.warn({ err: briefError(error) }, 'could not queue webhook deliveries; the sweeper will');
    });
  }
  // The events are written first: a run started here by the enqueue publishes after them.
  await Promise.all([publish(), enqueue(), dequeue()]);
}

/** Who did something, for the audit trail. */
export interface Actor {
  /** Principal id, `system`, or `email-link:<token id>`. */
  id: string;
  ip?: string | null;
  userAgent?: string | null;
}
