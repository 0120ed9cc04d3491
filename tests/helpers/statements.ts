import pg from 'pg';

/** What {@link watchEngineStatements} has seen so far. */
export interface StatementWatch {
  /** Statements sent on the engine's connections (application_name `action-engine`) since the watch began or was reset. */
  count: number;
  /** Their texts, whitespace folded, first 80 characters. */
  texts: string[];
  /** Counts from zero again. */
  reset(): void;
  /** Ends the watch (pg.Client#query as it was). */
  stop(): void;
}

/**
 * Counts every statement the engine sends: all of them go through pg.Client#query on a
 * connection named `action-engine` (this test process's, whichever server sent it).
 */
export function watchEngineStatements(): StatementWatch {
  const original = pg.Client.prototype.query;
  const watch: StatementWatch = {
    count: 0,
    texts: [],
    reset() {
      watch.count = 0;
      watch.texts = [];
    },
    stop() {
      pg.Client.prototype.query = original;
    },
  };
  pg.Client.prototype.query = function (this: pg.Client & { connectionParameters?: { application_name?: string } }, ...args: unknown[]) {
    if (this.connectionParameters?.application_name === 'action-engine') {
      watch.count += 1;
      const first = args[0] as string | { text?: string };
      watch.texts.push((typeof first === 'string' ? first : (first?.text ?? '')).replace(/\s+/g, ' ').slice(0, 80));
    }
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof pg.Client.prototype.query;
  return watch;
}
