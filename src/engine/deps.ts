import type { Config } from '../config.js';
import type { PrismaClient } from '../generated/prisma/client.js';
import type { Logger } from '../logger.js';
import type { Mailer } from '../mail/mailer.js';
import type { ActionTypeRegistry } from './action-types.js';
import type { RateLimiter } from './rate-limiter.js';

/** What the engine's systems run on; built once by the composition root. */
export interface EngineDeps {
  db: PrismaClient;
  rateLimiter: RateLimiter;
  mailer: Mailer;
  logger: Logger;
  types: ActionTypeRegistry;
  config: Pick<Config, 'baseUrl' | 'approvalTtlSeconds'>;
  clock: () => Date;
}

/** Who did something, for the audit trail. */
export interface Actor {
  /** Principal id, `system`, or `email-link:<token id>`. */
  id: string;
  ip?: string | null;
  userAgent?: string | null;
}
