import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('loadConfig', () => {
  it('gives every setting its documented default when the environment is empty', () => {
    const config = loadConfig({}, '/srv/app');
    expect(config).toEqual({
      port: 4000,
      host: '127.0.0.1',
      baseUrl: 'http://localhost:4000',
      dataDir: '/srv/app/.data',
      databaseUrl: undefined,
      dbPoolMax: 10,
      redisUrl: 'redis://127.0.0.1:6379',
      redisPrefix: 'ae',
      redisAutostart: true,
      smtpUrl: undefined,
      mailFrom: 'Action Engine <action-engine@localhost>',
      outboxDir: '/srv/app/.data/outbox',
      filesRoot: '/srv/app/.data/files',
      workerConcurrency: 5,
      retryBackoffMs: 1000,
      reconcileSeconds: 30,
      enableNoopHandler: false,
      approvalTtlSeconds: 86_400,
      expirySweepSeconds: 300,
      escalationMinuteMs: 60_000,
      approvalRequestsPerHour: 20,
      logLevel: 'info',
      shutdownTimeoutMs: 10_000,
      maxRequestBytes: 1_000_000,
      signingKey: undefined,
      auditSealIntervalMs: 250,
      wsMaxSubscriptionsPerConnection: 100,
      wsMaxConnectionsPerKey: 50,
      wsKeyRecheckSeconds: 5,
      redisCommandTimeoutMs: 2000,
      workerLockMs: 8000,
      workerStalledCheckMs: 4000,
      configCacheTtlMs: 5000,
      caldavUrl: undefined,
      outboundBlockPrivate: false,
      outboundTimeoutMs: 10_000,
      graceSeconds: 0,
      webhookRetryBaseMs: 5000,
      webhookMaxFailures: 10,
      mcpApiKey: undefined,
    });
  });

  it('coerces numbers and booleans and derives folders from DATA_DIR', () => {
    const config = loadConfig(
      { PORT: '8080', DATA_DIR: 'var', REDIS_AUTOSTART: 'false', APPROVAL_TTL_HOURS: '0.5', WORKER_CONCURRENCY: '12' },
      '/srv/app',
    );
    expect(config.port).toBe(8080);
    expect(config.baseUrl).toBe('http://localhost:8080');
    expect(config.redisAutostart).toBe(false);
    expect(config.approvalTtlSeconds).toBe(1800);
    expect(config.workerConcurrency).toBe(12);
    expect(config.outboxDir).toBe(path.join('/srv/app/var', 'outbox'));
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', PORT: '' }).databaseUrl).toBeUndefined();
  });

  it('refuses bad values naming each variable at fault', () => {
    let caught: unknown;
    try {
      loadConfig({ PORT: 'eighty', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud' });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const message = (caught as Error).message;
    expect(message).toMatch(/PORT/);
    expect(message).toMatch(/DATABASE_URL: must be a postgres/);
    expect(message).toMatch(/LOG_LEVEL/);
  });
});
