/**
 * Figures and small helpers shared by the benchmark's parts (scripts/bench*.ts): percentiles,
 * a bounded pool of tasks, number formatting.
 */

/** Durations in ms, nearest-rank percentiles. */
export interface Stats {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles of durations in ms (NaN for an empty list). */
export function stats(values: readonly number[]): Stats {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
  return {
    count: sorted.length,
    p50: at(50),
    p95: at(95),
    p99: at(99),
    min: sorted[0] ?? NaN,
    max: sorted.at(-1) ?? NaN,
    mean: sorted.length ? sorted.reduce((s, v) => s + v, 0) / sorted.length : NaN,
  };
}

/** A load run: how many completed per second and how long each took. */
export interface Measurement {
  label: string;
  /** Completed per second, first start → last completion. */
  throughput: number;
  seconds: number;
  latency: Stats;
}

export const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '–').padStart(8);
export const rate = (v: number) => `${Number.isFinite(v) ? v.toFixed(1) : '–'}/s`.padStart(11);
export const pct = (v: number) => (Number.isFinite(v) ? `${(v * 100).toFixed(0)}%` : '–');
/** A number with `digits` decimals, or "n/a" when it is not known. */
export const num = (v: number | null | undefined, digits = 1) => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(digits));

export function latencyHeader(first: string, width: number): string {
  return `${first.padEnd(width)}${'p50'.padStart(8)}${'p95'.padStart(8)}${'p99'.padStart(8)}${'max'.padStart(8)}`;
}
export function latencyRow(label: string, s: Stats, width: number): string {
  return `${label.padEnd(width)}${ms(s.p50)}${ms(s.p95)}${ms(s.p99)}${ms(s.max)}`;
}

/** Runs `task(i)` for i = 0 … n-1 with at most `concurrency` in flight. */
export async function pool(n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

/** Registers a cleanup, run in reverse order at the end (also after a failure or a time-out). */
export type Defer = (label: string, fn: () => Promise<unknown> | unknown) => void;

/** `fn` the first time; later calls get the same promise (closing twice is then harmless). */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => (result ??= fn());
}

export function assertLoopback(what: string, host: string): void {
  if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(host)) throw new Error(`${what} is not on loopback (${host}); this benchmark runs on loopback only`);
}

/** Relative change from `before` to `after` (0.1 = 10 % more). */
export function change(before: number, after: number): number {
  return before === 0 ? NaN : (after - before) / before;
}
