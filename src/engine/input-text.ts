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
