/**
 * The per-user folders under the files root (`<filesRoot>/<spaceId>/<userId>/…`) as the
 * filesystem handlers (`create_document.filesystem`, `move_file.filesystem`) reach them: paths
 * are walked one segment at a time from the user's real folder, symlinks are resolved as they
 * come, and nothing that resolves outside the user's folder is read, created or moved.
 * A path a payload names that cannot be used is refused with {@link RefusedPayloadError} naming
 * the field (the action fails; no other handler or operator could do better).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { PermanentHandlerError, RefusedPayloadError, type HandlerAction } from './types.js';

/** Refuses a space or user id that could not be one folder name. */
export function assertSafeSegment(value: string, what: string): void {
  if (!/^[A-Za-z0-9_-]+$/.test(value)) throw new RefusedPayloadError(`${what} "${value}" cannot name a folder`);
}

/** Refuses an absolute path, a NUL or a `..` segment (the action types' schemas refuse them first). */
export function assertRelative(p: string, what: string): void {
  if (path.isAbsolute(p) || p.startsWith('\\') || p.includes('\0') || p.split(/[\\/]/).includes('..')) {
    throw new RefusedPayloadError(`${what}: "${p}" must be a relative path inside your folder, without ".."`);
  }
}

/** The segments of a user path as the handlers use them: `\` and `/` separate, empty and `.` segments drop out. */
export function pathSegments(p: string): string[] {
  return p.split(/[\\/]/).filter((s) => s !== '' && s !== '.');
}

export function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

export async function realpathOrNull(p: string): Promise<string | null> {
  return (await realpath(p).catch(ignoreCode('ENOENT'))) ?? null;
}

/** The lexical path of the user's folder, its ids checked to be single folder names. */
export function userFolderPath(filesRoot: string, action: Pick<HandlerAction, 'spaceId' | 'userId'>): string {
  assertSafeSegment(action.spaceId, 'space id');
  assertSafeSegment(action.userId, 'user id');
  return path.join(filesRoot, action.spaceId, action.userId);
}

/** Creates the user's folder if needed and returns its real path, checked to be inside the files root. */
export async function ensureUserRoot(filesRoot: string, action: Pick<HandlerAction, 'spaceId' | 'userId'>): Promise<string> {
  const lexical = userFolderPath(filesRoot, action);
  await mkdir(lexical, { recursive: true });
  const [root, real] = await Promise.all([realpath(filesRoot), realpath(lexical)]);
  if (!isInside(real, root)) throw new RefusedPayloadError("the user's folder resolves outside the files root");
  return real;
}

/** The real path of the user's folder, checked to be inside the files root; null when it does not exist. */
export async function existingUserRoot(filesRoot: string, action: Pick<HandlerAction, 'spaceId' | 'userId'>): Promise<string | null> {
  const lexical = userFolderPath(filesRoot, action);
  const real = await realpathOrNull(lexical);
  if (real === null) return null;
  const root = await realpath(filesRoot);
  if (!isInside(real, root)) throw new RefusedPayloadError("the user's folder resolves outside the files root");
  return real;
}

/**
 * Walks `folder` one segment at a time from the user's (real) folder, resolving symlinks as it
 * goes (one that leads outside the user's folder is refused) and, with `create`, creating what
 * is missing, so nothing is ever created outside the user's folder. Returns the real path of the
 * folder, or null when a segment is missing and `create` is false. `field` names the payload
 * field in refusals (`payload.folder`, `payload.to`), `shown` the path as the caller wrote it.
 */
export async function resolveFolder(
  userRoot: string,
  segments: readonly string[],
  options: { create: boolean; field: string; shown: string },
): Promise<string | null> {
  const { field, shown } = options;
  let current = userRoot;
  for (let i = 0; i < segments.length; ) {
    const next = path.join(current, segments[i]!);
    const stat = await lstat(next).catch(ignoreCode('ENOENT'));
    if (!stat) {
      if (!options.create) return null;
      await mkdir(next).catch(ignoreCode('EEXIST'));
      continue; // look again: someone else may have created it, as anything
    }
    if (stat.isSymbolicLink()) {
      const resolved = await realpathOrNull(next);
      if (resolved === null || !isInside(resolved, userRoot)) {
        throw new RefusedPayloadError(`${field}: "${shown}" leads outside your folder (through a symbolic link)`);
      }
      const resolvedStat = await lstat(resolved);
      if (!resolvedStat.isDirectory()) throw new RefusedPayloadError(`${field}: "${shown}": ${segments.slice(0, i + 1).join('/')} is not a folder`);
      current = resolved;
    } else if (stat.isDirectory()) {
      current = next;
    } else {
      throw new RefusedPayloadError(`${field}: "${shown}": ${segments.slice(0, i + 1).join('/')} is not a folder`);
    }
    i++;
  }
  // Checked again as a whole: a segment may have been swapped for a symlink while walking.
  const real = await realpath(current);
  if (!isInside(real, userRoot)) throw new RefusedPayloadError(`${field}: "${shown}" leads outside your folder`);
  return real;
}

/**
 * Walks `folder` (a user path) from the user's folder, creating what is missing; see
 * {@link resolveFolder}. Returns the user's folder itself when `folder` is empty.
 */
export async function ensureFolder(userRoot: string, folder: string | undefined, field = 'payload.folder'): Promise<string> {
  if (!folder) return userRoot;
  assertRelative(folder, field);
  return (await resolveFolder(userRoot, pathSegments(folder), { create: true, field, shown: folder }))!;
}

/** The file's bytes, `null` if there is none; refuses symlinks and anything else that is not a regular file. */
export async function readRegularFile(file: string, label: string): Promise<Buffer | null> {
  const stat = await lstat(file).catch(ignoreCode('ENOENT'));
  if (!stat) return null;
  if (!stat.isFile()) throw new PermanentHandlerError(`"${label}" exists and is not a regular file`);
  return readFile(file).catch(ignoreCode('ENOENT')).then((b) => b ?? null);
}

export function sha256Of(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

/** The SHA-256 of a file's content, read as a stream (files to move may be large). */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function toPosix(p: string): string {
  return p.split(path.sep).join('/');
}

export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : undefined;
}

export function ignoreCode(code: string): (error: unknown) => undefined {
  return (error) => {
    if (errorCode(error) === code) return undefined;
    throw error;
  };
}

/** Filesystems without hard links answer `link` with one of these. */
export function noHardLinks(code: string | undefined): boolean {
  return code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS' || code === 'EOPNOTSUPP';
}
