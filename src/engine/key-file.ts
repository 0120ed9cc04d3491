import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** How one kind of key lives in a file under DATA_DIR (the secrets key, the signing key). */
export interface KeyFileKind<K> {
  /** What the key is, in messages: `the <label> file …`. */
  label: string;
  /** Reads the file's text; throws with a message that never echoes the key. */
  parse(text: string): K;
  /** A new key, as the file's text. */
  generate(): string;
  /** Called once, by the process that created the file (a warning to back it up). */
  created(file: string): void;
  /** The error to throw for a file that cannot be read or made (`message` names the file). */
  error(message: string): Error;
}

/** The key in `file`, or null when there is no such file. */
export function readKeyFile<K>(file: string, kind: Pick<KeyFileKind<K>, 'label' | 'parse' | 'error'>): K | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    return kind.parse(text);
  } catch (error) {
    throw kind.error(`the ${kind.label} file ${file} ${(error as Error).message}`);
  }
}

/**
 * The key in `file`, else a new one written there: mode 0600, by an atomic link() from a
 * temporary file, so of two processes starting at once the first to link wins and the other
 * reads its key.
 */
export function loadOrCreateKeyFile<K>(file: string, kind: KeyFileKind<K>): K {
  const existing = readKeyFile(file, kind);
  if (existing) return existing;
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, kind.generate(), { mode: 0o600, flag: 'wx' });
  chmodSync(tmp, 0o600);
  try {
    linkSync(tmp, file);
    kind.created(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    rmSync(tmp, { force: true });
  }
  const key = readKeyFile(file, kind);
  if (!key) throw kind.error(`the ${kind.label} file ${file} could not be created`);
  return key;
}
