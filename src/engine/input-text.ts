/** Longest prefix of a caller's input quoted back in an error message. */
export const QUOTED_INPUT_CHARS = 40;

/**
 * A caller's input as an error message quotes it: in quotes, cut to a short prefix (a 100 kB
 * id answers with a short message), control characters escaped.
 */
export function shortInput(value: string, max = QUOTED_INPUT_CHARS): string {
  const cut = [...value.slice(0, max * 2)].slice(0, max).join('');
  const quoted = JSON.stringify(cut).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
  return cut.length < value.length ? `${quoted}… (${value.length} characters)` : quoted;
}

/** `U+000D`-style name of a character, for messages. */
function codePoint(char: string): string {
  return `U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

const CONTROL_NAMES: Record<string, string> = { '\r': 'CR', '\n': 'LF', '\u2028': 'LINE SEPARATOR', '\u2029': 'PARAGRAPH SEPARATOR' };

/**
 * Control characters refused in every string a caller sends: C0 controls other than TAB, LF
 * and CR, DEL (U+007F) and C1 controls (U+0080–U+009F). NUL is one of them.
 */
export const CONTROL_CHARACTERS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;
/** Line breaks, refused in single-line fields (header and iCalendar injection): CR, LF, U+2028, U+2029. */
export const LINE_BREAKS = /[\r\n\u2028\u2029]/;
/** Bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069), refused in single-line fields. */
export const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/;

/**
 * JSON Schema (ECMA-262) character classes saying the same as the expressions above, for
 * the `pattern` of published schemas: what a multi-line and what a single-line field may hold.
 */
export const MULTI_LINE_CHARACTER = '[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]';
export const SINGLE_LINE_CHARACTER = '[^\\u0000-\\u0008\\u000A-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]';

/** The rule a multi-line field states in its description. */
export const MULTI_LINE_RULE = 'Line breaks (LF, CR) and TAB are allowed; other control characters (U+0000–U+001F, U+007F–U+009F) are not.';
/** The rule a single-line field states in its description. */
export const SINGLE_LINE_RULE =
  'One line: no line breaks (CR, LF, U+2028, U+2029), no control characters other than TAB (U+0000–U+001F, U+007F–U+009F) and no bidirectional override or isolate characters (U+202A–U+202E, U+2066–U+2069).';

/** Why a string has a control character no field takes (NUL, C0 other than TAB/LF/CR, DEL, C1), or null. */
export function controlCharacterProblem(value: string): string | null {
  const found = CONTROL_CHARACTERS.exec(value);
  if (!found) return null;
  if (found[0] === '\0') return 'contains a NUL character (U+0000), which is not allowed';
  return `contains the control character ${codePoint(found[0])}, which is not allowed (of the control characters only TAB, LF and CR are)`;
}

/**
 * Why a string cannot be a single-line field (a subject, a name, an address, a path), or
 * null: any control character but TAB, a line break (CR, LF, U+2028, U+2029: header and
 * iCalendar injection) or a bidirectional override or isolate character (text that displays
 * other than it reads).
 */
export function singleLineProblem(value: string): string | null {
  const control = controlCharacterProblem(value);
  if (control) return control;
  const lineBreak = LINE_BREAKS.exec(value);
  if (lineBreak) {
    return `must be a single line: contains a line break (${codePoint(lineBreak[0])} ${CONTROL_NAMES[lineBreak[0]]}); CR, LF, U+2028 and U+2029 are not allowed here`;
  }
  const bidi = BIDI_CONTROLS.exec(value);
  if (bidi) {
    return `contains the bidirectional control character ${codePoint(bidi[0])}; override and isolate characters (U+202A–U+202E, U+2066–U+2069) are not allowed here`;
  }
  return null;
}
