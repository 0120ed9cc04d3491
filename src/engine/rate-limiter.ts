import type { Redis } from 'ioredis';
import { RateLimitedError, SafetyUnavailableError } from './errors.js';
import { withRedisTimeout } from './infra-errors.js';

/** One limit of a rule: at most `limit` units in any `windowSeconds`-long sliding window. */
export interface RateWindow {
  limit: number;
  windowSeconds: number;
}

/** Whose quota is counted: one counter per user per action type, inside a space. */
export interface RateLimitSubject {
  spaceId: string;
  userId: string;
  type: string;
  /** How refusals name what is counted (default: the type), e.g. "approval requests". */
  label?: string;
}

/** A unit already recorded elsewhere (the database), to put back into a counter Redis lost. */
export interface RecordedUnit {
  unitId: string;
  /** When it was consumed, in ms since the epoch. */
  atMs: number;
}

/** The state of one window for one subject. */
export interface RateLimitStatus {
  limit: number;
  windowSeconds: number;
  /** Units counted in the window (after the consume, when returned by `consume`). */
  current: number;
  /** When the oldest counted unit leaves the window; now if none is counted. */
  resetsAt: Date;
}

/**
 * What `consume` returns: the windows after the consume, and (not enumerable, so the array
 * compares like a plain one) whether this call counted the unit (false: it was already counted,
 * by an earlier call with the same unit id, which owns it).
 */
export type ConsumedStatus = RateLimitStatus[] & { readonly counted: boolean };

/** Sliding-window rate limits counted in Redis, all windows of a rule set checked at once. */
export interface RateLimiter {
  /**
   * Consumes one unit in every window, or none. Throws RateLimitedError (retryAfterSeconds =
   * ceil of the longest wait among the windows that refused) or SafetyUnavailableError when Redis
   * cannot be reached/answers an error (fail closed).
   *
   * `unitId` names the unit (an action id): consuming the same id again while it is still
   * counted succeeds without counting it twice, so a retried request does not pay twice.
   */
  consume(subject: RateLimitSubject, windows: RateWindow[], unitId: string): Promise<ConsumedStatus>;
  /** The current count of every window, consuming nothing. Throws SafetyUnavailableError like `consume`. */
  status(subject: RateLimitSubject, windows: RateWindow[]): Promise<RateLimitStatus[]>;
  /**
   * Gives a unit back (nothing was recorded for it). Removing a unit that is not counted does
   * nothing. Throws SafetyUnavailableError like `consume`.
   */
  release(subject: RateLimitSubject, unitId: string): Promise<void>;
}

/** Options of {@link createRateLimiter}. */
export interface RateLimiterOptions {
  /** Key prefix; keys are `<prefix>:rl:<spaceId>:<userId>:<type>`. */
  prefix: string;
  /** Longest wait for Redis before failing closed with SafetyUnavailableError (default 2000). */
  timeoutMs?: number;
  /**
   * Tests only: milliseconds since the epoch to use instead of the Redis server's TIME. Production
   * must leave it unset (see the clock note in the Lua script).
   */
  now?: () => number;
  /**
   * Where the counted units are recorded for good (the actions in the database). When a
   * subject's key is missing (Redis restarted empty, or the key expired because nothing is
   * counted), `consume` and `status` first ask for the units recorded since `sinceMs` (the start
   * of the largest window) and put them back, in the same atomic script as the check. Without
   * it a missing key simply means nothing is counted.
   */
  rebuild?: (subject: RateLimitSubject, sinceMs: number) => Promise<RecordedUnit[]>;
}

/*
 * Layout: ONE sorted set per subject (space+user+type); member = unit id, score = time consumed
 * in ms. Each window is a ZCOUNT over (now - window, +inf]. Why not one ZSET per window: a unit
 * is a single fact ("consumed at t"), so one write records it for every window, the windows can
 * never disagree about it, memory is one entry per unit in the largest window instead of one per
 * window, and the script touches one key (no cross-slot trouble under Redis Cluster). ZCOUNT is
 * O(log N), so the extra windows are cheap. The set is trimmed to the largest window on consume.
 *
 * Clock: the script reads Redis TIME rather than taking the caller's clock. Several API
 * processes share one counter; with their own clocks, a process running behind would write
 * "old" scores (units that leave the window early, i.e. over-admit) and one running ahead would
 * count too much and compute waits from a time others do not share. The Redis server is the one
 * clock every caller agrees on, and the check and the write happen at that same instant inside
 * the atomic script. (Redis 7 replicates scripts by effects, so calling TIME before a write is
 * allowed and replicas receive the concrete ZADD score.)
 *
 * Scores are whole milliseconds, formatted with %.0f: Lua 5.1 turns numbers into strings with
 * %.14g, which would silently round anything longer than 14 digits (microsecond timestamps).
 *
 * Rebuild: Redis may lose the set (a restart without persistence, a failover, eviction). With
 * ARGV[5 + 2n] = 'check' and the key missing, the script answers { 4, now } and does nothing;
 * the caller then reads the recorded units since now - largest window from the database and
 * calls again with them (ARGV[5 + 2n] = 'seed', then count, then unit/score pairs). They are
 * added with ZADD NX inside the same atomic step as the check, so concurrent rebuilds of one
 * subject are harmless (the same members, counted once) and nothing else slips in between.
 *
 * Reply: { outcome, now, then per window: count, oldest score in window or -1, wait ms }
 * outcome 1 = consumed, 2 = unit already counted (nothing written), 0 = refused, 3 = status only,
 * 4 = key missing, call again with the recorded units.
 */
const SCRIPT = `
local key = KEYS[1]
local mode = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local member = ARGV[3]
local n = tonumber(ARGV[4])
local function fmt(x) return string.format('%.0f', x) end

local maxWindow = 0
for i = 1, n do
  local w = tonumber(ARGV[4 + 2 * i])
  if w > maxWindow then maxWindow = w end
end

local rebuild = ARGV[5 + 2 * n]
if rebuild == 'check' and redis.call('EXISTS', key) == 0 then
  return { 4, now }
end
if rebuild == 'seed' then
  local seeds = tonumber(ARGV[6 + 2 * n])
  local from = now - maxWindow
  local added = false
  for i = 1, seeds do
    local score = tonumber(ARGV[6 + 2 * n + 2 * i])
    -- Recorded by another clock: a unit "from the future" counts as consumed now.
    if score > now then score = now end
    if score > from then
      redis.call('ZADD', key, 'NX', fmt(score), ARGV[5 + 2 * n + 2 * i])
      added = true
    end
  end
  if added then redis.call('PEXPIRE', key, fmt(maxWindow)) end
end

if mode == 'release' then
  return { redis.call('ZREM', key, member), now }
end

local outcome = 3
if mode == 'consume' then
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - maxWindow))
  if redis.call('ZSCORE', key, member) then outcome = 2 else outcome = 1 end
end

local reply = { 0, now }
for i = 1, n do
  local limit = tonumber(ARGV[3 + 2 * i])
  local w = tonumber(ARGV[4 + 2 * i])
  local from = '(' .. fmt(now - w)
  local count = redis.call('ZCOUNT', key, from, '+inf')
  local oldest = -1
  local first = redis.call('ZRANGEBYSCORE', key, from, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if first[2] then oldest = tonumber(first[2]) end
  local wait = 0
  if outcome ~= 2 and outcome ~= 3 and count >= limit then
    outcome = 0
    -- The unit whose departure brings the count below the limit (the oldest, unless the
    -- limit was lowered below the current count).
    local r = redis.call('ZRANGEBYSCORE', key, from, '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
    if r[2] then wait = tonumber(r[2]) + w - now else wait = w end
  end
  reply[#reply + 1] = count
  reply[#reply + 1] = oldest
  reply[#reply + 1] = wait
end

if outcome == 1 then
  redis.call('ZADD', key, fmt(now), member)
  redis.call('PEXPIRE', key, fmt(maxWindow))
  for i = 1, n do
    local base = 2 + 3 * (i - 1)
    reply[base + 1] = reply[base + 1] + 1
    if reply[base + 2] < 0 then reply[base + 2] = now end
  end
end
reply[1] = outcome
return reply
`;

const COMMAND = 'actionEngineRateLimit';

type Mode = 'consume' | 'status' | 'release';

type ScriptCommand = (
  key: string,
  mode: Mode,
  now: string,
  member: string,
  count: string,
  ...windowArgs: string[]
) => Promise<unknown>;

/** Creates a limiter on `redis`, defining its Lua script there (EVALSHA, EVAL on NOSCRIPT). */
export function createRateLimiter(redis: Redis, options: RateLimiterOptions): RateLimiter {
  const timeoutMs = options.timeoutMs ?? 2000;
  redis.defineCommand(COMMAND, { numberOfKeys: 1, lua: SCRIPT });
  const run = (redis as unknown as Record<typeof COMMAND, ScriptCommand>)[COMMAND].bind(redis);

  const keyOf = (s: RateLimitSubject): string =>
    // Encoded so a ':' inside an id cannot make two subjects share a key.
    [options.prefix, 'rl', ...[s.spaceId, s.userId, s.type].map(encodeURIComponent)].join(':');

  async function script(mode: Mode, subject: RateLimitSubject, windows: RateWindow[], unitId: string, rebuildArgs: string[]): Promise<number[]> {
    const windowArgs = windows.flatMap((w) => [String(w.limit), String(windowMs(w))]);
    const now = options.now ? String(Math.floor(options.now())) : '';
    let reply: unknown;
    try {
      const key = keyOf(subject);
      // With ioredis' offline queue a command to a down Redis waits for reconnection; the request
      // must not. A command given up on may still run later and count a unit the caller was told
      // was refused: the safe side (fail closed).
      reply = await withRedisTimeout(run(key, mode, now, unitId, String(windows.length), ...windowArgs, ...rebuildArgs), timeoutMs, 'the rate-limit script');
    } catch (err) {
      throw unavailable(err);
    }
    const nums = Array.isArray(reply) ? reply.map(Number) : [];
    if (nums.length < 2 || nums.some((x) => !Number.isFinite(x))) {
      throw unavailable(new Error(`unexpected reply from rate-limit script: ${JSON.stringify(reply)}`));
    }
    return nums;
  }

  async function call(
    mode: 'consume' | 'status',
    subject: RateLimitSubject,
    windows: RateWindow[],
    unitId: string,
  ): Promise<{ outcome: number; now: number; rows: Array<[count: number, oldest: number, wait: number]> }> {
    let nums = await script(mode, subject, windows, unitId, [options.rebuild ? 'check' : 'none']);
    if (nums[0] === 4 && options.rebuild) {
      const maxWindow = Math.max(...windows.map(windowMs));
      let units: RecordedUnit[];
      try {
        units = await options.rebuild(subject, nums[1]! - maxWindow);
      } catch (err) {
        throw unavailable(err);
      }
      const seedArgs = units.flatMap((u) => [u.unitId, String(Math.floor(u.atMs))]);
      nums = await script(mode, subject, windows, unitId, ['seed', String(units.length), ...seedArgs]);
    }
    if (nums.length !== 2 + 3 * windows.length) {
      throw unavailable(new Error(`unexpected reply from rate-limit script: ${JSON.stringify(nums)}`));
    }
    const rows = windows.map((_, i) => nums.slice(2 + 3 * i, 5 + 3 * i) as [number, number, number]);
    return { outcome: nums[0]!, now: nums[1]!, rows };
  }

  function statuses(
    windows: RateWindow[],
    now: number,
    rows: Array<[number, number, number]>,
  ): RateLimitStatus[] {
    return windows.map((w, i) => {
      const [count, oldest] = rows[i]!;
      return {
        limit: w.limit,
        windowSeconds: w.windowSeconds,
        current: count,
        resetsAt: new Date(oldest < 0 ? now : oldest + windowMs(w)),
      };
    });
  }

  return {
    async consume(subject, windows, unitId) {
      validate(windows);
      if (typeof unitId !== 'string' || unitId === '') {
        throw new TypeError('rate limiter: unitId must be a non-empty string');
      }
      if (windows.length === 0) return consumed([], false);
      const { outcome, now, rows } = await call('consume', subject, windows, unitId);
      if (outcome === 0) {
        const refused = windows.map((w, i) => ({ w, wait: rows[i]![2] })).filter((r) => r.wait > 0);
        const retryAfterSeconds = Math.max(1, Math.ceil(Math.max(...refused.map((r) => r.wait)) / 1000));
        const which = refused
          .map((r) => `${r.w.limit} ${subject.label ?? subject.type} per ${describeWindow(r.w.windowSeconds)}`)
          .join(' and ');
        throw new RateLimitedError(`rate limit: ${which} reached; retry in ${retryAfterSeconds} s`, retryAfterSeconds);
      }
      return consumed(statuses(windows, now, rows), outcome === 1);
    },
    async status(subject, windows) {
      validate(windows);
      if (windows.length === 0) return [];
      const { now, rows } = await call('status', subject, windows, '');
      return statuses(windows, now, rows);
    },
    async release(subject, unitId) {
      if (typeof unitId !== 'string' || unitId === '') return;
      // The window arguments only bound the trim; one nominal window is enough to run the script.
      await script('release', subject, [{ limit: 1, windowSeconds: 1 }], unitId, ['none']);
    },
  };
}

function consumed(list: RateLimitStatus[], counted: boolean): ConsumedStatus {
  return Object.defineProperty(list, 'counted', { value: counted, enumerable: false }) as ConsumedStatus;
}

function windowMs(w: RateWindow): number {
  return Math.max(1, Math.round(w.windowSeconds * 1000));
}

function validate(windows: RateWindow[]): void {
  for (const w of windows) {
    if (!Number.isInteger(w.limit) || w.limit < 0) {
      throw new RangeError(`rate limiter: limit must be an integer ≥ 0, got ${w.limit}`);
    }
    if (!Number.isFinite(w.windowSeconds) || w.windowSeconds <= 0) {
      throw new RangeError(`rate limiter: windowSeconds must be > 0, got ${w.windowSeconds}`);
    }
  }
}

/** "hour", "day", "2 hours", "90 s": how the refusal message names a window. */
function describeWindow(seconds: number): string {
  const units: Array<[number, string]> = [
    [86_400, 'day'],
    [3_600, 'hour'],
    [60, 'minute'],
    [1, 'second'],
  ];
  for (const [size, name] of units) {
    if (seconds % size === 0) {
      const n = seconds / size;
      return n === 1 ? name : `${n} ${name}s`;
    }
  }
  return `${seconds} s`;
}

/** What the caller is told: the problem, never the client library's text (that stays in `cause`, for the log). */
const UNAVAILABLE_MESSAGE = 'the rate-limit counters cannot be read right now; nothing was recorded, try again shortly';

function unavailable(err: unknown): SafetyUnavailableError {
  if (err instanceof SafetyUnavailableError) return err;
  const error = new SafetyUnavailableError(UNAVAILABLE_MESSAGE);
  Object.defineProperty(error, 'cause', { value: err, enumerable: false, configurable: true, writable: true });
  return error;
}
