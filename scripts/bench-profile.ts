/**
 * CPU profiles for the benchmark: of this process (inspector session), and summaries of the
 * `.cpuprofile` files that `node --cpu-prof` writes for the engine processes it spawns.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Session } from 'node:inspector/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

export async function startProfiler(): Promise<() => Promise<CpuProfile>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    return profile as CpuProfile;
  };
}

/** Where a profile's CPU samples fall (idle samples left out), by package (node_modules), source folder, or V8 bucket. */
export function summariseProfile(profile: CpuProfile): Array<[string, number]> {
  const where = new Map<number, string>();
  for (const node of profile.nodes) {
    const { url, functionName } = node.callFrame;
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
    const src = /\/(src|scripts|tests)\/(.*)$/.exec(url);
    where.set(
      node.id,
      pkg ?? (src ? `${src[1]}/${src[2]!.split('/').slice(0, -1).join('/') || src[2]}` : url.startsWith('node:') ? `node:${url.slice(5).split('/')[0]}` : url ? 'other' : `(${functionName.replace(/[()]/g, '') || 'native'})`),
    );
  }
  const time = new Map<string, number>();
  let total = 0;
  (profile.samples ?? []).forEach((id, i) => {
    const dt = profile.timeDeltas?.[i] ?? 0;
    const key = where.get(id) ?? '?';
    // Waiting is not CPU: shares are of the time the process was running.
    if (key === '(idle)') return;
    time.set(key, (time.get(key) ?? 0) + dt);
    total += dt;
  });
  return [...time.entries()].map(([k, v]) => [k, v / (total || 1)] as [string, number]).sort((a, b) => b[1] - a[1]);
}

/**
 * Summarises the main-thread profiles in `dir` that `node --cpu-prof` wrote at exit, named
 * `CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile` (thread 0 is the main thread; the others
 * are tsx's loader thread, which only compiles modules at start).
 */
export async function summariseProfileDir(dir: string): Promise<Array<{ file: string; pid: number; shares: Array<[string, number]> }>> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f)).sort();
  const out = [];
  for (const file of files) {
    const profile = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as CpuProfile;
    out.push({ file: path.join(dir, file), pid: Number(file.split('.')[3]), shares: summariseProfile(profile) });
  }
  return out;
}
