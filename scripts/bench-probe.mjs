// Preloaded (`node --import`) into the engine processes that scripts/bench.ts spawns. Counts the
// SQL statements sent on the engine's connections (application_name `action-engine`) where the
// `pg` driver sends them, exactly as the bench counts them in its own process, and tells the
// bench over the IPC channel when asked. Changes nothing else; never loaded by the service itself.
import pg from 'pg';

let statements = 0;
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function counted(...args) {
  if (this.connectionParameters?.application_name === 'action-engine') statements += 1;
  return query.apply(this, args);
};

process.on('message', (message) => {
  if (message?.type === 'bench:stats') process.send?.({ type: 'bench:stats', id: message.id, statements });
});
// The IPC channel alone must not keep a stopping process alive.
process.channel?.unref();
