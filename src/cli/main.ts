import { Command, Option } from 'commander';
import { pino } from 'pino';
import { createApp } from '../app.js';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { EmbeddedPostgresError } from '../db/embedded-postgres.js';
import { applyMigrations } from '../db/migrations.js';
import { DatabaseConnectionError, SchemaEngineError } from '../db/schema-engine.js';
import { ServiceUnavailableError } from '../db/local-redis.js';
import { openDatabase } from '../db/open-database.js';
import { createPrismaClient } from '../db/prisma-client.js';
import { Redis } from 'ioredis';
import { ApiKeyInputError, createApiKey, listApiKeys, revokeApiKey } from '../engine/api-keys.js';
import { EngineError } from '../engine/errors.js';
import { announceKeyRevocation } from '../engine/key-revocation.js';
import { publishConfigChange } from '../engine/config-cache.js';
import { verifyAuditChain } from '../engine/audit.js';
import type { PrismaClient } from '../generated/prisma/client.js';
import { createLogger, type Logger } from '../logger.js';
import { createApiServer } from '../server.js';
import { startWorker } from '../worker.js';

const ROLES = ['agent', 'approver', 'operator', 'analyst', 'admin'] as const;

/** Errors a person can act on: printed as one line, no stack. */
function isExpected(error: unknown): error is Error {
  return [ConfigError, ServiceUnavailableError, ApiKeyInputError, EngineError, EmbeddedPostgresError, DatabaseConnectionError, SchemaEngineError].some(
    (type) => error instanceof type,
  );
}

function setup(logsTo: 'stdout' | 'stderr' = 'stdout'): { config: Config; logger: Logger } {
  const config = loadConfig(process.env);
  // The one-shot commands log to stderr, so their stdout carries only their answer (a key).
  return { config, logger: createLogger({ level: config.logLevel }, pino.destination(logsTo === 'stdout' ? 1 : 2)) };
}

async function runService(mode: 'start' | 'serve' | 'worker'): Promise<void> {
  const { config, logger } = setup();
  const app = await createApp(config, logger, { migrate: mode === 'start', sweepExpiredApprovals: mode !== 'worker' });
  const worker = mode === 'serve' ? null : startWorker(app);
  let server: ReturnType<typeof createApiServer> | null = null;
  if (mode === 'worker') {
    logger.info({ concurrency: config.workerConcurrency }, 'Action Engine worker running');
  } else {
    // The dev server (`start`) only: scaled-out `serve` processes are set up with `keys create`.
    if (mode === 'start' && app.database.migrated) {
      await printBootstrapKey(app.db).catch((error: unknown) => logger.warn({ err: error }, 'could not create the bootstrap admin key'));
    }
    server = createApiServer(app);
    const port = await server.listen();
    logger.info({ url: `http://${config.host}:${port}/graphql`, mode }, 'Action Engine listening (GraphiQL and graphql-ws on /graphql)');
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: no new connections or jobs, finishing what is in flight');
    try {
      await Promise.all([server?.close(), worker?.close()]);
      await app.close();
      logger.info('stopped');
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'error during shutdown');
      process.exit(1);
    }
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

/**
 * First start on an empty database: there is nobody who could create keys through the API, so
 * make an admin key for a space named "default" and show it once (spec §9).
 */
async function printBootstrapKey(db: PrismaClient): Promise<void> {
  if ((await db.principal.count()) > 0) return;
  const created = await createApiKey(db, { role: 'ADMIN', space: 'default', name: 'bootstrap admin', actor: 'system:bootstrap' });
  process.stderr.write(
    `\nNo API keys yet: created an admin key for space "default". It is shown this once; keep it:\n\n  ${created.key}\n\n` +
      'Create more with: npx action-engine keys create --role agent --space default --user <name> [--email <address>]\n\n',
  );
}

async function withDatabase<T>(fn: (ctx: { config: Config; logger: Logger; target: Awaited<ReturnType<typeof openDatabase>> }) => Promise<T>): Promise<T> {
  const { config, logger } = setup('stderr');
  const target = await openDatabase(config, logger);
  try {
    return await fn({ config, logger, target });
  } finally {
    await target.close();
  }
}

/**
 * Connects to Redis for one message (giving up after 2 s), sends it and disconnects. False when
 * Redis cannot be reached: the one-shot commands still succeed, and say what that means.
 */
async function sendOnce(config: Config, send: (redis: Redis) => Promise<boolean>): Promise<boolean> {
  const redis = new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2000, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    return await redis.connect().then(
      () => send(redis),
      () => false,
    );
  } finally {
    redis.disconnect();
  }
}

const program = new Command('action-engine')
  .description('Stands between AI agents and the real world. Configuration comes from the environment (see README).')
  .showHelpAfterError();

program
  .command('start')
  .description('API and worker in one process, migrating the database first (what npm start runs)')
  .action(() => runService('start'));

program
  .command('serve')
  .description('API only (GraphQL, graphql-ws, approval pages, health, metrics); run `migrate` first')
  .action(() => runService('serve'));

program
  .command('worker')
  .description('execution worker only (BullMQ); any number of them can share one Redis and one Postgres')
  .action(() => runService('worker'));

program
  .command('migrate')
  .description('apply pending migrations from prisma/migrations (no network needed)')
  .action(() =>
    withDatabase(async ({ target }) => {
      const { applied } = await applyMigrations({ connection: target.connection, log: (msg) => console.error(msg) });
      console.log(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'database schema is up to date: nothing to apply');
    }),
  );

const keys = program.command('keys').description('API keys');
keys
  .command('create')
  .description('create a principal and print its new API key (shown once)')
  .addOption(
    new Option('--role <role>', 'agent | approver | operator | analyst | admin').choices(ROLES).makeOptionMandatory(),
  )
  .requiredOption('--space <space>', 'space name (created if new)')
  .option('--user <user>', 'user handle in the space (created if new); required for agents and approvers')
  .option('--email <email>', "the user's email, where approval requests are sent")
  .option('--name <name>', 'a label for the key holder')
  .action((opts: { role: (typeof ROLES)[number]; space: string; user?: string; email?: string; name?: string }) =>
    withDatabase(async ({ config, target }) => {
      const db = createPrismaClient({ connection: target.connection, poolMax: 1 });
      try {
        const created = await createApiKey(db, {
          role: opts.role.toUpperCase() as Uppercase<(typeof ROLES)[number]>,
          space: opts.space,
          user: opts.user,
          email: opts.email,
          name: opts.name,
          actor: 'system:cli',
        });
        console.error(`created ${opts.role} key for space "${opts.space}"${opts.user ? `, user "${opts.user}"` : ''} (principal ${created.principalId}); it is shown once:`);
        console.log(created.key);
        if (created.userId && opts.email !== undefined) {
          // The email may have changed: running processes drop their cached copy of the user now.
          const change = { kind: 'user', spaceId: created.spaceId, userId: created.userId } as const;
          const announced = await sendOnce(config, (redis) => publishConfigChange(redis, config.redisPrefix, change, 2000));
          if (!announced) console.error(`could not reach Redis: running processes use the new email within CONFIG_CACHE_TTL_MS (${config.configCacheTtlMs} ms)`);
        }
      } finally {
        await db.$disconnect();
      }
    }),
  );

keys
  .command('list')
  .description('list API keys: id, prefix, role, space, user, created, revoked (never the keys or their hashes)')
  .option('--space <space>', 'only this space')
  .option('--json', 'one JSON array instead of a table')
  .action((opts: { space?: string; json?: boolean }) =>
    withDatabase(async ({ target }) => {
      const db = createPrismaClient({ connection: target.connection, poolMax: 1 });
      try {
        let spaceId: string | undefined;
        if (opts.space !== undefined) {
          const space = await db.space.findUnique({ where: { slug: opts.space }, select: { id: true } });
          if (!space) throw new ApiKeyInputError(`no space named "${opts.space.slice(0, 63)}"`);
          spaceId = space.id;
        }
        const rows = await listApiKeys(db, { spaceId });
        if (opts.json) {
          console.log(JSON.stringify(rows.map((r) => ({ id: r.id, prefix: r.prefix, role: r.role, space: r.space, user: r.user, name: r.name, createdAt: r.createdAt, revokedAt: r.revokedAt }))));
          return;
        }
        const table = [
          ['ID', 'PREFIX', 'ROLE', 'SPACE', 'USER', 'CREATED', 'REVOKED'],
          ...rows.map((r) => [r.id, r.prefix, r.role.toLowerCase(), r.space, r.user ?? '-', r.createdAt.toISOString(), r.revokedAt?.toISOString() ?? '-']),
        ];
        const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
        for (const row of table) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
        if (rows.length === 0) console.error('no API keys');
      } finally {
        await db.$disconnect();
      }
    }),
  );
keys
  .command('revoke')
  .description('revoke an API key by id or prefix (as `keys list` shows); every API process stops accepting it within seconds')
  .argument('<key>', 'the key id, or its prefix (e.g. ae_3kQ9xZp)')
  .action((ref: string) =>
    withDatabase(async ({ config, target }) => {
      const db = createPrismaClient({ connection: target.connection, poolMax: 1 });
      try {
        const revoked = await revokeApiKey(db, { ref, allowPrefix: true, actor: 'system:cli' });
        // Tell the running API processes at once; if Redis is unreachable they notice at their next re-check.
        const announced = await sendOnce(config, (redis) => announceKeyRevocation(redis, config.redisPrefix, revoked.id));
        console.log(`revoked ${revoked.role.toLowerCase()} key ${revoked.prefix}… (${revoked.id}) of space "${revoked.space}"${revoked.user ? `, user "${revoked.user}"` : ''}`);
        if (!announced) console.error(`could not reach Redis: running API processes stop accepting the key within WS_KEY_RECHECK_SECONDS (their periodic check)`);
      } finally {
        await db.$disconnect();
      }
    }),
  );

const audit = program.command('audit').description('the audit trail');
audit
  .command('verify')
  .description('walk the hash chain and name the first altered entry')
  .action(() =>
    withDatabase(async ({ target }) => {
      const db = createPrismaClient({ connection: target.connection, poolMax: 1 });
      try {
        const result = await verifyAuditChain(db);
        if (result.ok) {
          console.log(`audit chain intact: ${result.checked} entries checked`);
          process.exitCode = 0;
        } else {
          console.error(`audit chain broken at entry ${result.firstBad!.id}: ${result.firstBad!.reason}`);
          process.exitCode = 1;
        }
      } finally {
        await db.$disconnect();
      }
    }),
  );


try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (isExpected(error)) {
    console.error(`action-engine: ${error.message}`);
    process.exit(1);
  }
  throw error;
}
