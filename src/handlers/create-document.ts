import { randomBytes } from 'node:crypto';
import { link, lstat, open, readdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { createDocument } from '../engine/action-types/create-document.js';
import { defineHandler } from './define-handler.js';
import { PermanentHandlerError, type RefusedPayloadError } from './types.js';
import {
  assertRelative,
  assertSafeSegment,
  ensureFolder,
  ensureUserRoot,
  errorCode,
  ignoreCode,
  isInside,
  noHardLinks,
  readRegularFile,
  realpathOrNull,
  sha256Of,
  toPosix,
} from './user-files.js';

// The safe-path helpers live in ./user-files.ts (shared with move_file.filesystem); re-exported
// here for modules that import them from this file.
export {
  assertRelative,
  assertSafeSegment,
  ensureFolder,
  ensureUserRoot,
  errorCode,
  ignoreCode,
  isInside,
  readRegularFile,
  realpathOrNull,
  sha256Of,
  toPosix,
} from './user-files.js';

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
 * symlinks included: a folder that leads outside is refused ({@link RefusedPayloadError}: the
 * action fails, no operator task). Rollback deletes the file unless it was changed since.
 */
export const createDocumentHandler = defineHandler({
  name: 'create_document.filesystem',
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

/** Makes `target` hold `content`, unless it already does; never replaces a different file. */
async function writeOnce(target: string, content: Buffer, sha256: string): Promise<void> {
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
      if (noHardLinks(code)) await rename(temp, target);
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
