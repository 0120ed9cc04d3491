/**
 * How to reach one PostgreSQL database, as discrete fields.
 *
 * Discrete fields rather than a URL because node-postgres lets a parsed URL override
 * `database`, which breaks anything that derives a second database (scratch, shadow) from
 * the same settings (shared/notes/prisma-offline.md §6).
 */
export interface PgConnectionOptions {
  host: string;
  port: number;
  user: string;
  password?: string | undefined;
  database: string;
}

/** Parses a `postgres://` / `postgresql://` URL into discrete fields. */
export function parseDatabaseUrl(url: string): PgConnectionOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('DATABASE_URL is not a valid URL (expected postgres://user:password@host:port/database)');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new Error(`DATABASE_URL must start with postgres:// or postgresql://, not ${parsed.protocol}//`);
  }
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 5432,
    user: decodeURIComponent(parsed.username) || 'postgres',
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    database: database || 'postgres',
  };
}

/** The URL form, for tools that want one. The password is included: never log the result. */
export function toDatabaseUrl(c: PgConnectionOptions): string {
  const auth = c.password ? `${encodeURIComponent(c.user)}:${encodeURIComponent(c.password)}` : encodeURIComponent(c.user);
  const host = c.host.includes(':') ? `[${c.host}]` : c.host;
  return `postgresql://${auth}@${host}:${c.port}/${encodeURIComponent(c.database)}`;
}

/** The same server, another database. */
export function withDatabase(c: PgConnectionOptions, database: string): PgConnectionOptions {
  return { ...c, database };
}
