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
import { verifyAuditLog } from '../engine/audit.js';
import { AuditBundleError, AuditExportError, exportActionAudit, parseAuditBundle, verifyAuditBundle } from '../engine/audit-export.js';
import { redisCheckpointAnchor, startAuditSealer, type AuditSealer } from '../engine/audit-sealer.js';
import { createSigner, publicKeysFromJwks, readSigningKeyFile, SigningKeyError } from '../engine/signing.js';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { PrismaClient } from '../generated/prisma/client.js';
import { createLogger, type Logger } from '../logger.js';
import { createApiServer } from '../server.js';
import { startWorker } from '../worker.js';
import { runMcpStdio } from './mcp.js';

const ROLES = ['agent', 'approver', 'operator', 'analyst', 'admin'] as const;

/** Errors a person can act on: printed as one line, no stack. */
function isExpected(error: unknown): error is Error {
  return [
    ConfigError,
    ServiceUnavailableError,
    ApiKeyInputError,
    EngineError,
    EmbeddedPostgresError,
    DatabaseConnectionError,
    SchemaEngineError,
    SigningKeyError,
    AuditExportError,
    AuditBundleError,
  ].some(
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
  // The audit sealer runs beside the workers (one at a time across processes, by an advisory lock).
  const sealer: AuditSealer | null =
    mode === 'serve'
      ? null
      : startAuditSealer({
          db: app.db,
          signer: app.signer,
          logger,
          intervalMs: config.auditSealIntervalMs,
          ready: () => app.database.migrated,
          anchor: redisCheckpointAnchor({ redis: app.redis, prefix: config.redisPrefix, timeoutMs: config.redisCommandTimeoutMs, db: app.db }),
        });
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
      // After the worker: what its last jobs wrote is sealed by this round or by the next sealer.
      await sealer?.close();
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
  .command('mcp')
  .description('MCP server over stdio for agents, acting with the API key in ACTION_ENGINE_API_KEY (logs go to stderr)')
  .action(() => {
    const { config, logger } = setup('stderr');
    return runMcpStdio(config, logger);
  });

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
  .description(
    'check every audit chain and every signed checkpoint, naming the first altered, deleted, inserted or reordered entry (exit 1); ' +
      'with --bundle, check an exported bundle offline instead (no database)',
  )
  .option('--bundle <file>', 'an `audit export` bundle to verify offline')
  .option('--keys <file>', 'trusted public keys (the JSON of /.well-known/action-engine-keys, saved); only these may have signed')
  .action((opts: { bundle?: string; keys?: string }) => (opts.bundle ? verifyBundleCommand(opts.bundle, opts.keys) : verifyDatabaseCommand(opts.keys)));

audit
  .command('export')
  .description('write one action\'s audit entries with the signed checkpoints that sealed them and the public keys, as a JSON bundle that verifies offline')
  .requiredOption('--action <id>', 'the action id')
  .option('--out <file>', 'where to write the bundle (default: standard output)')
  .option('--wait <seconds>', 'how long to wait for the sealer to seal the newest entries', '5')
  .action((opts: { action: string; out?: string; wait: string }) =>
    withDatabase(async ({ target }) => {
      const waitSeconds = Number(opts.wait);
      if (!Number.isFinite(waitSeconds) || waitSeconds < 0 || waitSeconds > 600) throw new AuditExportError('--wait takes a number of seconds from 0 to 600');
      const db = createPrismaClient({ connection: target.connection, poolMax: 1 });
      try {
        const bundle = await exportActionAudit(db, opts.action, { waitMs: waitSeconds * 1000 });
        const text = `${JSON.stringify(bundle, null, 2)}\n`;
        if (opts.out) await writeFile(opts.out, text);
        else process.stdout.write(text);
        console.error(
          `exported ${bundle.entries.length} audit entries of action ${bundle.actionId} with ${bundle.checkpoints.length} checkpoint(s)` +
            `${opts.out ? ` to ${opts.out}` : ''}; check it with: action-engine audit verify --bundle FILE`,
        );
      } finally {
        await db.$disconnect();
      }
    }),
  );

/**
 * The keys `audit verify` trusts: those in `--keys`, and this deployment's own key when it is
 * configured here (SIGNING_KEY or DATA_DIR/signing.key; never generated by verifying). Null when
 * there are none: signatures are then checked with the keys stored in the database (or bundle).
 */
async function trustedKeys(config: Config, keysFile: string | undefined): Promise<Map<string, string> | null> {
  const trusted = new Map<string, string>();
  if (keysFile) {
    const text = await readFile(keysFile, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw new SigningKeyError(`cannot read --keys ${keysFile}: ${error.code ?? error.message}`);
    });
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new SigningKeyError(`--keys ${keysFile} is not JSON`);
    }
    for (const k of publicKeysFromJwks(json)) trusted.set(k.keyId, k.publicKey);
  }
  const own = config.signingKey ?? readSigningKeyFile(path.join(config.dataDir, 'signing.key'));
  if (own) {
    const signer = createSigner(own);
    trusted.set(signer.keyId, signer.publicKey);
  }
  return trusted.size ? trusted : null;
}

function verifyDatabaseCommand(keysFile: string | undefined): Promise<void> {
  return withDatabase(async ({ config, target }) => {
    const trusted = await trustedKeys(config, keysFile);
    const db = createPrismaClient({ connection: target.connection, poolMax: 1 });
    try {
      // The newest checkpoint as the sealers recorded it in Redis, if Redis answers.
      const redis = new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2000, retryStrategy: () => null });
      redis.on('error', () => undefined);
      const expectedHead = await redis.connect().then(
        () => redisCheckpointAnchor({ redis, prefix: config.redisPrefix, timeoutMs: 2000, db }).read(),
        () => undefined,
      ).catch(() => undefined);
      redis.disconnect();
      if (expectedHead === undefined) console.error('note: Redis did not answer: the newest checkpoint was not compared with the one the sealers recorded there');
      const { chains, seal } = await verifyAuditLog(db, { ...(trusted ? { trustedKeys: trusted } : {}), expectedHead: expectedHead ?? null });
      if (chains.ok) console.log(`audit chain intact: ${chains.checked} entries checked`);
      else {
        const at = chains.firstBad!.id === null ? `the end of chain ${chains.firstBad!.chain}` : `entry ${chains.firstBad!.id}`;
        console.error(`audit chain broken at ${at}: ${chains.firstBad!.reason}`);
      }
      if (seal.ok) {
        const keys = seal.keyIds.length ? `, signed by key ${seal.keyIds.join(', ')}` : '';
        console.log(`audit checkpoints intact: ${seal.checkpoints} checkpoints sealing ${seal.sealed} entries${keys}; ${seal.unsealed} entries not sealed yet`);
        if (seal.keysFromDatabase && seal.checkpoints > 0) {
          console.log(
            'note: signatures were checked with the public keys stored in the database; to rule out a key added there, run this where SIGNING_KEY or DATA_DIR/signing.key is available, or pass --keys FILE',
          );
        }
      } else {
        const bad = seal.firstBad!;
        console.error(`audit checkpoint ${bad.checkpointId} broken${bad.entryId !== undefined ? ` at entry ${bad.entryId}` : ''}: ${bad.reason}`);
      }
      process.exitCode = chains.ok && seal.ok ? 0 : 1;
    } finally {
      await db.$disconnect();
    }
  });
}

async function verifyBundleCommand(file: string, keysFile: string | undefined): Promise<void> {
  const config = loadConfig(process.env);
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new AuditBundleError(`cannot read ${file}: ${error.code ?? error.message}`);
  });
  const trusted = await trustedKeys(config, keysFile);
  const result = verifyAuditBundle(parseAuditBundle(text), trusted ? { trustedKeys: trusted } : {});
  if (result.ok) {
    console.log(
      `audit bundle intact: action ${result.actionId}, ${result.entries} entries sealed in ${result.checkpoints} checkpoint(s), signed by key ${result.keyIds.join(', ')}`,
    );
    if (result.keysFromBundle) console.log('note: the keys came from the bundle itself; compare them with /.well-known/action-engine-keys, or pass --keys FILE');
    process.exitCode = 0;
  } else {
    const bad = result.firstBad!;
    const at = bad.entryId !== undefined ? `entry ${bad.entryId}` : `checkpoint ${bad.checkpointId}`;
    console.error(`audit bundle broken at ${at}: ${bad.reason}`);
    process.exitCode = 1;
  }
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (isExpected(error)) {
    console.error(`action-engine: ${error.message}`);
    process.exit(1);
  }
  throw error;
}
