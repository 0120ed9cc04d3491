import { createHash, randomBytes } from 'node:crypto';
import { link, lstat, mkdir, open, readdir, readFile, realpath, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { createDocument } from '../engine/action-types/create-document.js';
import { defineHandler } from './define-handler.js';
import { PermanentHandlerError, type HandlerAction } from './types.js';

const EXTENSIONS = { markdown: 'md', html: 'html', text: 'txt' } as const;
/** Longest slug in UTF-8 bytes; file names are limited to 255 bytes on most filesystems. */
const SLUG_MAX_BYTES = 80;

/**
 * `create_document` → a file in the user's folder:
 * `<filesRoot>/<spaceId>/<userId>/<folder?>/<slug(title)>-<first 8 chars of action id>.<md|html|txt>`.
 *
 * Idempotent by action (`repeat: 'check'`): the file name is derived from the action id and the
 * file appears atomically (written to a temporary file, then hard-linked into place, which
 * never replaces an existing file), so a repeat finds its own file with the same content and
 * reports it done instead of writing a second one. Paths never leave the user's folder,
 * symlinks included. Rollback deletes the file unless it was changed since.
 */
export const createDocumentHandler = defineHandler({
  name: 'create-document.filesystem',
  kind: 'api',
  types: [createDocument],
  repeat: 'check',
  /** Where the file went (relative to the user's folder) and its SHA-256, to delete exactly it. */
  rollbackData: z.object({ path: z.string().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),

  async execute(ctx) {
    const { action, payload: doc, services } = ctx;
    await ctx.progress(`Writing "${doc.title}"…`);

    const userRoot = await ensureUserRoot(services.filesRoot, action);
    const dir = await ensureFolder(userRoot, doc.folder || undefined);
    const target = path.join(dir, `${slug(doc.title)}-${action.id.slice(0, 8)}.${EXTENSIONS[doc.format]}`);
    const content = Buffer.from(doc.content, 'utf8');
    const sha256 = sha256Of(content);
    await writeOnce(target, content, sha256);

    const inUserFolder = toPosix(path.relative(userRoot, target));
    return {
      status: 'completed',
      provider: 'filesystem',
      externalRef: `${action.spaceId}/${action.userId}/${inUserFolder}`,
      data: { path: inUserFolder, bytes: content.length, sha256 },
      rollbackData: { path: inUserFolder, sha256 },
    };
  },

  async rollback(ctx) {
    const { path: rel, sha256: expected } = ctx.rollbackData;
    assertSafeSegment(ctx.action.spaceId, 'space id');
    assertSafeSegment(ctx.action.userId, 'user id');
    assertRelative(rel, 'document path');

    const userRoot = await realpathOrNull(path.join(ctx.services.filesRoot, ctx.action.spaceId, ctx.action.userId));
    if (userRoot === null) return;
    const parent = await realpathOrNull(path.dirname(path.resolve(userRoot, rel)));
    if (parent === null) return;
    if (!isInside(parent, userRoot)) throw new PermanentHandlerError(`cannot roll back: "${rel}" resolves outside the user's folder`);
    const file = path.join(parent, path.basename(rel));

    const current = await readRegularFile(file, rel);
    if (current === null) return;
    if (sha256Of(current) !== expected) {
      throw new PermanentHandlerError(`cannot roll back: "${rel}" was changed since it was created; it was not deleted`);
    }
    await unlink(file).catch(ignoreCode('ENOENT'));
  },
});

/** Creates the user's folder if needed and returns its real path, checked to be inside the files root. */
export async function ensureUserRoot(filesRoot: string, action: Pick<HandlerAction, 'spaceId' | 'userId'>): Promise<string> {
  assertSafeSegment(action.spaceId, 'space id');
  assertSafeSegment(action.userId, 'user id');
  const lexical = path.join(filesRoot, action.spaceId, action.userId);
  await mkdir(lexical, { recursive: true });
  const [root, real] = await Promise.all([realpath(filesRoot), realpath(lexical)]);
  if (!isInside(real, root)) throw new PermanentHandlerError('the user\'s folder resolves outside the files root');
  return real;
}

/**
 * Walks `folder` one segment at a time from the user's (real) folder, creating what is missing
 * and resolving symlinks as it goes, so nothing is ever created outside the user's folder.
 * Returns the real path of the folder.
 */
export async function ensureFolder(userRoot: string, folder: string | undefined): Promise<string> {
  if (!folder) return userRoot;
  assertRelative(folder, 'payload.folder');
  const segments = folder.split(/[\\/]/).filter((s) => s !== '' && s !== '.');
  let current = userRoot;
  for (let i = 0; i < segments.length; ) {
    const next = path.join(current, segments[i]!);
    const stat = await lstat(next).catch(ignoreCode('ENOENT'));
    if (!stat) {
      await mkdir(next).catch(ignoreCode('EEXIST'));
      continue; // look again: someone else may have created it, as anything
    }
    if (stat.isSymbolicLink()) {
      const resolved = await realpathOrNull(next);
      if (resolved === null || !isInside(resolved, userRoot)) {
        throw new PermanentHandlerError(`payload.folder: "${folder}" leads outside your folder (through a symbolic link)`);
      }
      const resolvedStat = await lstat(resolved);
      if (!resolvedStat.isDirectory()) throw new PermanentHandlerError(`payload.folder: "${folder}" is not a folder`);
      current = resolved;
    } else if (stat.isDirectory()) {
      current = next;
    } else {
      throw new PermanentHandlerError(`payload.folder: "${folder}" is not a folder`);
    }
    i++;
  }
  // Checked again as a whole: a segment may have been swapped for a symlink while walking.
  const real = await realpath(current);
  if (!isInside(real, userRoot)) throw new PermanentHandlerError(`payload.folder: "${folder}" leads outside your folder`);
  return real;
}

/** Makes `target` hold `content`, unless it already does; never replaces a different file. */
export async function writeOnce(target: string, content: Buffer, sha256: string): Promise<void> {
  const name = path.basename(target);
  // A run of this action killed mid-write (worker SIGKILLed) left its temporary file: this run
  // (a repeat or a recovery) removes it before anything else.
  await removeStaleTemps(target);
  if (await matchesExisting(target, sha256, name)) return;

  const temp = path.join(path.dirname(target), `.${name}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temp, target);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'EEXIST') {
        // A concurrent run of the same action got there first.
        if (await matchesExisting(target, sha256, name)) return;
        throw error;
      }
      // Filesystems without hard links: rename, having checked just above that nothing is there.
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS' || code === 'EOPNOTSUPP') await rename(temp, target);
      else throw error;
    }
  } finally {
    await unlink(temp).catch(ignoreCode('ENOENT'));
  }
}

/** The temporary files of `target` (`.<name>.<12 hex>.tmp`), named only by this action's runs. */
function isTempOf(target: string, entry: string): boolean {
  const prefix = `.${path.basename(target)}.`;
  return entry.startsWith(prefix) && /^[0-9a-f]{12}\.tmp$/.test(entry.slice(prefix.length));
}

/** Removes temporary files an interrupted run of this action left next to `target`. */
async function removeStaleTemps(target: string): Promise<void> {
  const dir = path.dirname(target);
  const entries = (await readdir(dir).catch(ignoreCode('ENOENT'))) ?? [];
  for (const entry of entries) {
    if (!isTempOf(target, entry)) continue;
    const file = path.join(dir, entry);
    const stat = await lstat(file).catch(ignoreCode('ENOENT'));
    if (stat?.isFile()) await unlink(file).catch(ignoreCode('ENOENT'));
  }
}

/** Whether `file` exists with this checksum; refuses a different file or something that is not a regular file. */
async function matchesExisting(file: string, sha256: string, name: string): Promise<boolean> {
  const existing = await readRegularFile(file, name);
  if (existing === null) return false;
  if (sha256Of(existing) === sha256) return true;
  throw new PermanentHandlerError(`"${name}" already exists with different content; it was not overwritten`);
}

/** The file's bytes, `null` if there is none; refuses symlinks and anything else that is not a regular file. */
export async function readRegularFile(file: string, label: string): Promise<Buffer | null> {
  const stat = await lstat(file).catch(ignoreCode('ENOENT'));
  if (!stat) return null;
  if (!stat.isFile()) throw new PermanentHandlerError(`"${label}" exists and is not a regular file`);
  return readFile(file).catch(ignoreCode('ENOENT')).then((b) => b ?? null);
}

/** A file-name-safe rendering of a title: lower case, letters and digits joined by `-`. */
function slug(title: string): string {
  const base = title
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .normalize('NFC')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, '-')
    .replace(/^-+|-+$/g, '');
  let out = '';
  for (const ch of base) {
    if (Buffer.byteLength(out + ch) > SLUG_MAX_BYTES) break;
    out += ch;
  }
  return out.replace(/-+$/, '') || 'document';
}

export function assertSafeSegment(value: string, what: string): void {
  if (!/^[A-Za-z0-9_-]+$/.test(value)) throw new PermanentHandlerError(`${what} "${value}" cannot name a folder`);
}

export function assertRelative(p: string, what: string): void {
  if (path.isAbsolute(p) || p.startsWith('\\') || p.includes('\0') || p.split(/[\\/]/).includes('..')) {
    throw new PermanentHandlerError(`${what}: "${p}" must be a relative path inside your folder, without ".."`);
  }
}

export function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

export async function realpathOrNull(p: string): Promise<string | null> {
  return (await realpath(p).catch(ignoreCode('ENOENT'))) ?? null;
}

export function sha256Of(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

function toPosix(p: string): string {
  return p.split(path.sep).join('/');
}

function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : undefined;
}

export function ignoreCode(code: string): (error: unknown) => undefined {
  return (error) => {
    if (errorCode(error) === code) return undefined;
    throw error;
  };
}
