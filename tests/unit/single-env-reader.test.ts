import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configVariables } from '../../src/config.js';

const root = path.resolve(import.meta.dirname, '../..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (name === 'generated') return [];
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

describe('configuration', () => {
  it('is read from process.env by the CLI entry point alone', () => {
    // PATH is the operating system's search path for programs (redis-server), not a setting.
    const readers = sourceFiles(path.join(root, 'src'))
      .filter((file) => /process\.env(?!\.PATH\b)/.test(readFileSync(file, 'utf8')))
      .map((file) => path.relative(root, file));
    expect(readers).toEqual(['src/cli/main.ts']);
  });

  it('lists every variable the service reads in the README', () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const missing = configVariables.filter((name) => !new RegExp(`\\|\\s*\`${name}\`\\s*\\|`).test(readme));
    expect(missing).toEqual([]);
  });
});
