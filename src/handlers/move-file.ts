import { randomBytes } from 'node:crypto';
import { constants, type BigIntStats } from 'node:fs';
import { copyFile, link, lstat, mkdir, open, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { normalizeUserPath } from '../engine/action-types/fields.js';
import { moveFile } from '../engine/action-types/move-file.js';
import { defineHandler } from './define-handler.js';
import { PermanentHandlerError, RefusedPayloadError, type HandlerAction } from './types.js';
import {
  assertRelative,
  assertSafeSegment,
  errorCode,
  existingUserRoot,
  ignoreCode,
  noHardLinks,
  pathSegments,
  resolveFolder,
  sha256OfFile,
} from './user-files.js';

/** What a run records before it moves anything, so a repeat after a crash recognises its own move. */
const journalEntry = z.object({
  from: z.string(),
  to: z.string(),
  dev: z.string(),
  ino: z.string(),
  size: z.number(),
  sha256: z.string(),
});
type JournalEntry = z.infer<typeof journalEntry>;

/**
 * `move_file` → moves one regular file within the user's folder (`<filesRoot>/<spaceId>/<userId>/`),
 * creating missing target folders there.
 *
 * Refused before anything moves, naming the field ({@link RefusedPayloadError}: the action fails,
 * no other handler or operator is tried): a path through a symbolic link leading out of the
 * user's folder, a symlinked user folder, a missing source, a source that is not a regular file
 * (a folder, a symlink, a device), a target that exists (never replaced). Absolute paths and `..`
 * are refused earlier, by the type's schema, when the action is created.
 *
 * The move never replaces anything: a hard link at the target (which fails if the target exists)
 * and then the source is unlinked; across filesystems (a mount inside the user's folder) a copy
 * to a temporary file linked into place; on filesystems without hard links a rename after an
 * exclusive check.
 *
 * Idempotent by action (`repeat: 'check'`): before moving, a run records the source's identity
 * (device, inode, SHA-256) in `<filesRoot>/.action-engine/moves/<action id>.json`; a repeat
 * (a worker that died mid-move) that finds the target holding that file reports the move done
 * (finishing it if the source link is still there) instead of failing on a missing source.
 * Rollback moves the file back if it is unchanged at `to` and `from` is free again.
 */
export const moveFileHandler = defineHandler({
  name: 'move_file.filesystem',
  kind: 'api',
  types: [moveFile],
  repeat: 'check',
  /** Both paths (relative to the user's folder, normalised) and the file's identity, to move exactly it back. */
  rollbackData: z.object({
    from: z.string().min(1),
    to: z.string().min(1),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    ino: z.string(),
  }),

  async execute(ctx) {
    const { action, payload, services } = ctx;
    assertRelative(payload.from, 'payload.from');
    assertRelative(payload.to, 'payload.to');
    const from = normalizeUserPath(payload.from);
    const to = normalizeUserPath(payload.to);
    await ctx.progress(`Moving ${from} to ${to}…`);

    const journalFile = journalPath(services.filesRoot, action);
    const userRoot = await existingUserRoot(services.filesRoot, action);
    if (userRoot === null) throw missingSource(payload.from);
    const source = await locate(userRoot, payload.from, 'payload.from');
    const target = await locate(userRoot, payload.to, 'payload.to');
    const [sourceStat, targetStat] = await Promise.all([statOf(source), statOf(target)]);

    // A repeat of this action after a crash: the target holds the file a previous run moved.
    const journal = await readJournal(journalFile);
    if (journal && journal.from === from && journal.to === to && target && targetStat?.isFile() && (await isJournaled(target, targetStat, journal))) {
      if (source && sourceStat && sameInode(sourceStat, journal)) {
        // Died between linking the target and unlinking the source: finish the move.
        await unlink(source).catch(ignoreCode('ENOENT'));
      }
      await removeStaleTemps(target);
      return completed(action, journal);
    }

    if (!source || !sourceStat) throw missingSource(payload.from);
    if (sourceStat.isSymbolicLink()) throw new RefusedPayloadError(`payload.from: "${payload.from}" is a symbolic link; only regular files are moved`);
    if (sourceStat.isDirectory()) throw new RefusedPayloadError(`payload.from: "${payload.from}" is a folder; only files can be moved`);
    if (!sourceStat.isFile()) throw new RefusedPayloadError(`payload.from: "${payload.from}" is not a regular file`);
    if (targetStat) throw targetTaken(payload.to);

    const entry: JournalEntry = {
      from,
      to,
      dev: String(sourceStat.dev),
      ino: String(sourceStat.ino),
      size: Number(sourceStat.size),
      sha256: await sha256OfFile(source),
    };
    const targetDir = (await resolveFolder(userRoot, pathSegments(payload.to).slice(0, -1), { create: true, field: 'payload.to', shown: payload.to }))!;
    const destination = path.join(targetDir, path.basename(target ?? to));
    await writeJournal(journalFile, entry);
    await moveExclusive(source, destination, () => targetTaken(payload.to));
    return completed(action, entry);
  },

  async rollback(ctx) {
    const { from, to, sha256 } = ctx.rollbackData;
    const userRoot = await existingUserRoot(ctx.services.filesRoot, ctx.action);
    if (userRoot === null) throw new PermanentHandlerError(`cannot roll back: your folder no longer exists, and "${to}" with it`);
    const current = await locate(userRoot, to, 'to');
    const original = await locate(userRoot, from, 'from');
    const [currentStat, originalStat] = await Promise.all([statOf(current), statOf(original)]);
    const journalFile = journalPath(ctx.services.filesRoot, ctx.action);

    if (!current || !currentStat) {
      // A rollback that died after moving it back: it is back already.
      if (original && originalStat?.isFile() && (await sha256OfFile(original)) === sha256) {
        await unlink(journalFile).catch(ignoreCode('ENOENT'));
        return;
      }
      throw new PermanentHandlerError(`cannot roll back: "${to}" no longer exists; nothing was moved`);
    }
    if (!currentStat.isFile()) throw new PermanentHandlerError(`cannot roll back: "${to}" is no longer a regular file; nothing was moved`);
    if ((await sha256OfFile(current)) !== sha256) {
      throw new PermanentHandlerError(`cannot roll back: "${to}" was changed since it was moved; it stays where it is`);
    }
    const taken = () => new PermanentHandlerError(`cannot roll back: "${from}" is taken by another file now; "${to}" stays where it is`);
    if (originalStat) throw taken();
    const originalDir = (await resolveFolder(userRoot, pathSegments(from).slice(0, -1), { create: true, field: 'from', shown: from }))!;
    await moveExclusive(current, path.join(originalDir, path.basename(from)), taken);
    await unlink(journalFile).catch(ignoreCode('ENOENT'));
  },
});

function completed(action: Pick<HandlerAction, 'spaceId' | 'userId'>, entry: JournalEntry) {
  return {
    status: 'completed' as const,
    provider: 'filesystem',
    externalRef: `${action.spaceId}/${action.userId}/${entry.to}`,
    data: { from: entry.from, to: entry.to, bytes: entry.size, sha256: entry.sha256 },
    rollbackData: { from: entry.from, to: entry.to, sha256: entry.sha256, ino: entry.ino },
  };
}

function missingSource(from: string): RefusedPayloadError {
  return new RefusedPayloadError(`payload.from: "${from}" does not exist in your folder; nothing was moved`);
}

function targetTaken(to: string): RefusedPayloadError {
  return new RefusedPayloadError(`payload.to: "${to}" already exists; it was not replaced and nothing was moved`);
}

/**
 * The path of a file named by a user path: its folder resolved from the user's folder (symlinks
 * that stay inside it followed, one leading out refused), its last segment as written; null when
 * a folder on the way does not exist. The last segment itself is not followed.
 */
async function locate(userRoot: string, userPath: string, field: string): Promise<string | null> {
  const segments = pathSegments(userPath);
  const name = segments.at(-1);
  if (!name) throw new RefusedPayloadError(`${field}: "${userPath}" must name a file inside your folder`);
  const dir = await resolveFolder(userRoot, segments.slice(0, -1), { create: false, field, shown: userPath });
  return dir === null ? null : path.join(dir, name);
}

async function statOf(file: string | null): Promise<BigIntStats | undefined> {
  if (file === null) return undefined;
  return lstat(file, { bigint: true }).catch((error: unknown) => {
    // A folder on the way that is a file: nothing is there.
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return undefined;
    throw error;
  });
}

function sameInode(stat: BigIntStats, entry: JournalEntry): boolean {
  return String(stat.dev) === entry.dev && String(stat.ino) === entry.ino;
}

/** Whether the file at the target is the one a run of this action moved: the same inode, or (copied across filesystems) the same content. */
async function isJournaled(target: string, stat: BigIntStats, entry: JournalEntry): Promise<boolean> {
  if (sameInode(stat, entry)) return true;
  return Number(stat.size) === entry.size && (await sha256OfFile(target)) === entry.sha256;
}

/**
 * Moves `source` to `target` without ever replacing what is at `target` (`taken()` is thrown
 * then, and nothing moved): a hard link, then the source unlinked. Across filesystems: a copy to
 * a temporary file beside the target, synced, linked into place, then the source unlinked.
 * Without hard links: a rename right after checking the target is free (the only window).
 */
async function moveExclusive(source: string, target: string, taken: () => Error): Promise<void> {
  try {
    await link(source, target);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'EEXIST') throw taken();
    if (code === 'EXDEV') {
      await copyInto(source, target, taken);
    } else if (noHardLinks(code)) {
      if (await lstat(target).catch(ignoreCode('ENOENT'))) throw taken();
      await rename(source, target);
      return;
    } else {
      throw error;
    }
  }
  await unlink(source);
}

/** Copies `source` to a temporary file beside `target` and links it into place (never replacing). */
async function copyInto(source: string, target: string, taken: () => Error): Promise<void> {
  await removeStaleTemps(target);
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await copyFile(source, temp, constants.COPYFILE_EXCL);
    const handle = await open(temp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temp, target);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'EEXIST') throw taken();
      if (!noHardLinks(code)) throw error;
      if (await lstat(target).catch(ignoreCode('ENOENT'))) throw taken();
      await rename(temp, target);
    }
  } finally {
    await unlink(temp).catch(ignoreCode('ENOENT'));
  }
}

/** Removes the temporary files (`.<name>.<12 hex>.tmp`) an interrupted cross-filesystem copy left beside `target`. */
async function removeStaleTemps(target: string): Promise<void> {
  const dir = path.dirname(target);
  const prefix = `.${path.basename(target)}.`;
  const entries = (await readdir(dir).catch(ignoreCode('ENOENT'))) ?? [];
  for (const entry of entries) {
    if (!entry.startsWith(prefix) || !/^[0-9a-f]{12}\.tmp$/.test(entry.slice(prefix.length))) continue;
    const file = path.join(dir, entry);
    if ((await lstat(file).catch(ignoreCode('ENOENT')))?.isFile()) await unlink(file).catch(ignoreCode('ENOENT'));
  }
}

/** `<filesRoot>/.action-engine/moves/<action id>.json`: beside the spaces' folders (a space id has no dot), never in a user's folder. */
function journalPath(filesRoot: string, action: Pick<HandlerAction, 'id'>): string {
  assertSafeSegment(action.id, 'action id');
  return path.join(filesRoot, '.action-engine', 'moves', `${action.id}.json`);
}

async function readJournal(file: string): Promise<JournalEntry | null> {
  const text = await readFile(file, 'utf8').catch(ignoreCode('ENOENT'));
  if (text === undefined) return null;
  try {
    const parsed = journalEntry.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null; // a torn write of a run that died: as if there were none
  }
}

async function writeJournal(file: string, entry: JournalEntry): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temp, JSON.stringify(entry));
    await rename(temp, file);
  } finally {
    await unlink(temp).catch(ignoreCode('ENOENT'));
  }
}
