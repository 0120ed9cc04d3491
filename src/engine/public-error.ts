import path from 'node:path';

/** Longest error text stored where callers see it (Action.error, Execution.error, status messages). */
const MAX_PUBLIC_ERROR_CHARS = 1000;

/** Whose files an error may mention: paths in the user's folder are shown relative to it. */
export interface ErrorScope {
  filesRoot: string;
  spaceId: string;
  userId: string;
}

/**
 * What a caller is shown of a handler's error: its first line (never a stack), with paths in
 * the user's folder made relative to it (`notes/plan.md`, or `your folder`), and any other
 * absolute server path replaced by `[server path]`. The full error goes to the log only.
 */
export function publicErrorText(error: unknown, scope: ErrorScope): string {
  const raw = error instanceof Error ? error.message : String(error);
  let text = (raw.split('\n').find((line) => line.trim() !== '') ?? raw).trim();
  const filesRoot = path.resolve(scope.filesRoot);
  const userRoot = path.join(filesRoot, scope.spaceId, scope.userId);
  text = text.split(`${userRoot}${path.sep}`).join('');
  text = text.split(userRoot).join('your folder');
  text = text.split(`${filesRoot}${path.sep}`).join('[files]/');
  text = text.split(filesRoot).join('[files]');
  // Any other absolute path (not the `//` of a URL).
  text = text.replace(/(^|[\s'"`(=,])\/(?!\/)[^\s'"`),]+/g, (_m, before: string) => `${before}[server path]`);
  return text.length > MAX_PUBLIC_ERROR_CHARS ? `${text.slice(0, MAX_PUBLIC_ERROR_CHARS)}…` : text || 'the handler failed';
}
