import { describe, expect, it } from 'vitest';
import { Prisma } from '../../src/generated/prisma/client.js';
import { PermanentHandlerError } from '../../src/handlers/types.js';
import { isOwnInfrastructureError, RedisTimeoutError, unavailableDependency, unavailableError, withRedisTimeout } from '../../src/engine/infra-errors.js';

const known = (code: string, meta?: Record<string, unknown>, text = "Can't reach database server at 10.0.0.5:5432") =>
  new Prisma.PrismaClientKnownRequestError(`Invalid \`prisma.action.findUnique()\` invocation:\n\n${text}`, {
    code,
    clientVersion: '7',
    meta,
  });

describe('unavailableDependency', () => {
  it('names PostgreSQL for Prisma connection errors, a dropped connection in a transaction and a driver adapter outage', () => {
    expect(unavailableDependency(known('P1001'))).toBe('postgres');
    expect(unavailableDependency(known('P2024'))).toBe('postgres');
    expect(unavailableDependency(known('P2010', { driverAdapterError: { cause: { kind: 'DatabaseNotReachable' } } }))).toBe('postgres');
    expect(unavailableDependency(known('P2010', { driverAdapterError: { cause: { kind: 'postgres', code: '57P01' } } }))).toBe('postgres');
    expect(unavailableDependency(new Error('Client has encountered a connection error and is not queryable'))).toBe('postgres');
    expect(unavailableDependency(new Error('Connection terminated unexpectedly'))).toBe('postgres');
  });

  it('names Redis for ioredis outages and our own command timeout', () => {
    const maxRetries = Object.assign(new Error('Reached the max retries per request limit (which is 2).'), { name: 'MaxRetriesPerRequestError' });
    expect(unavailableDependency(maxRetries)).toBe('redis');
    expect(unavailableDependency(new Error('Connection is closed.'))).toBe('redis');
    expect(unavailableDependency(new RedisTimeoutError('the enqueue', 2000))).toBe('redis');
  });

  it('does not count a caller\'s or a handler\'s failure as an outage', () => {
    expect(unavailableDependency(known('P2002', { target: ['idempotencyKey'] }, 'Unique constraint failed on the fields: (`key`)'))).toBeNull();
    expect(unavailableDependency(known('P2025', undefined, 'No record was found for an update.'))).toBeNull();
    expect(unavailableDependency(new PermanentHandlerError('payload.title: is required'))).toBeNull();
    // A webhook's own server refusing the connection is the handler's failure, not ours.
    const fetchFailed = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 10.1.1.1:443'), { code: 'ECONNREFUSED' }) });
    expect(unavailableDependency(fetchFailed)).toBeNull();
    expect(unavailableDependency('a string')).toBeNull();
  });

  it('for errors a handler throws, counts only our own clients\' errors: a provider SDK message that reads like an outage is the handler\'s failure', () => {
    expect(isOwnInfrastructureError(known('P1001'))).toBe(true);
    expect(isOwnInfrastructureError(new RedisTimeoutError('the progress message', 2000))).toBe(true);
    expect(isOwnInfrastructureError(Object.assign(new Error('Connection is closed.'), { command: { name: 'publish' } }))).toBe(true);
    expect(isOwnInfrastructureError(new Error('Connection terminated unexpectedly'))).toBe(false);
    expect(isOwnInfrastructureError(new Error('Command timed out'))).toBe(false);
    expect(isOwnInfrastructureError(new Error('provider: Connection is closed.'))).toBe(false);
  });

  it('answers an outage as UNAVAILABLE with retryAfterSeconds, naming no host', () => {
    const answer = unavailableError(known('P1001'))!;
    expect(answer.code).toBe('UNAVAILABLE');
    expect(answer.retryAfterSeconds).toBeGreaterThan(0);
    expect(answer.message).not.toMatch(/10\.0\.0\.5|5432|prisma/i);
    expect(unavailableError(new Error('boom'))).toBeNull();
  });
});

describe('withRedisTimeout', () => {
  it('gives up after the timeout with RedisTimeoutError, and a late rejection is not unhandled', async () => {
    const late = new Promise((_, reject) => setTimeout(() => reject(new Error('late')), 100));
    const started = Date.now();
    await expect(withRedisTimeout(late, 30, 'the enqueue')).rejects.toBeInstanceOf(RedisTimeoutError);
    expect(Date.now() - started).toBeLessThan(90);
    await new Promise((r) => setTimeout(r, 120));
    await expect(withRedisTimeout(Promise.resolve(7), 30, 'x')).resolves.toBe(7);
  });
});
