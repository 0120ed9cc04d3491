import type { Config } from '../config.js';
import { redactUrl, type Logger } from '../logger.js';
import { parseDatabaseUrl, type PgConnectionOptions } from './connection.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';

/** Where the data lives: DATABASE_URL's server, or the embedded PGlite under DATA_DIR. */
export interface DatabaseTarget {
  kind: 'embedded' | 'postgres';
  connection: PgConnectionOptions;
  /** Pool size: the embedded server has one connection. */
  poolMax: number;
  /** Stops the embedded server; a no-op for an external one. */
  close(): Promise<void>;
}

export async function openDatabase(config: Config, logger: Logger): Promise<DatabaseTarget> {
  if (config.databaseUrl) {
    logger.info({ database: redactUrl(config.databaseUrl) }, 'using PostgreSQL from DATABASE_URL');
    return { kind: 'postgres', connection: parseDatabaseUrl(config.databaseUrl), poolMax: config.dbPoolMax, close: async () => {} };
  }
  const embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, log: (msg) => logger.info(msg) });
  logger.info({ dataDir: config.dataDir }, 'no DATABASE_URL: using the embedded PostgreSQL (PGlite)');
  return { kind: 'embedded', connection: embedded.connection, poolMax: embedded.poolMax, close: () => embedded.close() };
}
