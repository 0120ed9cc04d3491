import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseIsoDateTime } from '../../src/engine/date-time.js';
import { controlCharacterProblem, shortInput, singleLineProblem } from '../../src/engine/input-text.js';
import { publicErrorText } from '../../src/engine/public-error.js';
import { findInputProblem, stringProblem } from '../../src/resolvers/input-guard.js';

describe('DateTime parsing', () => {
  it('refuses dates new Date() would roll over, year 0000, hour 24 and offsets beyond ±23:59', () => {
    for (const bad of ['2030-02-31T10:00:00Z', '2029-02-29T10:00:00Z', '2030-04-31T00:00:00Z', '0000-01-01T00:00:00Z', '2030-01-01T24:00:00Z', '2030-01-01T10:60:00Z', '2030-01-01T10:00:00+24:00', '2030-13-01T00:00:00Z', '2030-01-01 10:00:00Z', '2030-01-01T10:00:00']) {
      expect('error' in parseIsoDateTime(bad), bad).toBe(true);
    }
    for (const good of ['2028-02-29T10:00:00Z', '2030-12-31T23:59:59.999+05:30', '0001-01-01T00:00Z']) {
      expect('date' in parseIsoDateTime(good), good).toBe(true);
    }
  });
});

describe('strings and depth', () => {
  it('finds NUL, unpaired surrogates (in values and keys) and depth beyond the limit, with the path', () => {
    expect(stringProblem('ok 😀')).toBeNull();
    expect(stringProblem('a\u0000')).toMatch(/NUL/);
    expect(stringProblem('\ud83d')).toMatch(/surrogate/);
    expect(stringProblem('\ude00x')).toMatch(/surrogate/);
    expect(findInputProblem({ a: [{ b: 'x\u0000' }] })).toEqual({ path: ['a', '0', 'b'], message: expect.stringMatching(/NUL/) });
    expect(findInputProblem({ ['k\ud800']: 1 })?.path).toEqual(['k\ud800']);
    let deep: unknown = 1;
    for (let i = 0; i < 5000; i++) deep = [deep];
    expect(findInputProblem(deep, 32)?.message).toMatch(/more than 32 levels/);
    let ok: unknown = 1;
    for (let i = 0; i < 32; i++) ok = [ok];
    expect(findInputProblem(ok, 32)).toBeNull();
  });

  it('finds C0 controls but TAB/LF/CR, DEL and C1 controls in any string or key, naming the character; TAB, LF, CR pass', () => {
    for (let code = 0; code <= 0xa0; code++) {
      const c = String.fromCharCode(code);
      const refused = (code < 0x20 && !'\t\n\r'.includes(c)) || (code >= 0x7f && code <= 0x9f);
      expect(stringProblem(`a${c}b`) !== null, `U+${code.toString(16)}`).toBe(refused);
      expect(controlCharacterProblem(`a${c}b`) !== null, `U+${code.toString(16)}`).toBe(refused);
    }
    expect(stringProblem('\u001b[31mred')).toBe('contains the control character U+001B, which is not allowed (of the control characters only TAB, LF and CR are)');
    expect(stringProblem('x\u0085')).toMatch(/U\+0085/);
    expect(stringProblem('line\r\nnext\tcol')).toBeNull();
    expect(findInputProblem({ payload: { items: [{ name: 'ok' }, { name: 'a\u007fb' }] } })).toEqual({
      path: ['payload', 'items', '1', 'name'],
      message: expect.stringMatching(/U\+007F/),
    });
    expect(findInputProblem({ ['k\u0001']: 1 })).toEqual({ path: ['k\u0001'], message: expect.stringMatching(/has a key that contains the control character U\+0001/) });
  });

  it('single-line text also refuses CR, LF, U+2028/U+2029 and bidi overrides/isolates, and keeps TAB', () => {
    expect(singleLineProblem('hi\r\nBcc: evil@x.co')).toMatch(/single line: contains a line break \(U\+000D CR\)/);
    expect(singleLineProblem('a\nb')).toMatch(/U\+000A LF/);
    expect(singleLineProblem('a\u2028b')).toMatch(/U\+2028/);
    for (const c of ['\u202a', '\u202e', '\u2066', '\u2069']) expect(singleLineProblem(`invoice${c}fdp.exe`)).toMatch(/bidirectional control character U\+20/);
    expect(singleLineProblem('a\u0007b')).toMatch(/control character U\+0007/);
    expect(singleLineProblem('a\tb \u200e ü 😀')).toBeNull();
  });

  it('quotes a caller\'s input back as a short prefix', () => {
    expect(shortInput('abc')).toBe('"abc"');
    const long = shortInput('x'.repeat(100_000));
    expect(long.length).toBeLessThan(80);
    expect(long).toMatch(/100000 characters/);
  });
});

describe('caller-visible error text', () => {
  it('turns a real filesystem error into user-relative text without server paths', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'ae-err-'));
    try {
      const filesRoot = path.join(root, 'files');
      await mkdir(path.join(filesRoot, 's', 'u'), { recursive: true });
      await writeFile(path.join(filesRoot, 's', 'u', 'notes'), 'a file');
      const error = await mkdir(path.join(filesRoot, 's', 'u', 'notes', 'sub')).catch((e: unknown) => e);
      const text = publicErrorText(error, { filesRoot, spaceId: 's', userId: 'u' });
      expect(text).toMatch(/ENOTDIR/);
      expect(text).toContain("'notes/sub'");
      expect(text).not.toContain(root);
      expect(publicErrorText(new Error('cannot open /etc/secret.conf\n    at x (/srv/app/x.ts:1:1)'), { filesRoot, spaceId: 's', userId: 'u' })).toBe(
        'cannot open [server path]',
      );
      expect(publicErrorText(new Error('POST https://api.example.com/orders answered 502'), { filesRoot, spaceId: 's', userId: 'u' })).toBe(
        'POST https://api.example.com/orders answered 502',
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
