// Generates what the checked-in sources need and do not hold: the Prisma client, the typed
// GraphQL documents (graphql-codegen) and the console's browser bundle (dist/console, built by
// Vite from src/console). Runs at `npm ci` (postinstall), without network.
//
// Prisma's CLI insists on a native schema engine at start-up and downloads one when it finds
// none; generation itself is WebAssembly and never calls it, so naming any existing file is
// enough (see shared/notes/prisma-offline.md).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: '1', CHECKPOINT_DISABLE: '1' };
env.PRISMA_SCHEMA_ENGINE_BINARY ??= fileURLToPath(import.meta.url);

function run(command, args) {
  const result = spawnSync(command, args, { stdio: 'inherit', env, shell: false });
  if (result.error) {
    console.error(`${command} could not start: ${result.error.message} (run npm ci first)`);
    process.exit(1);
  }
  if (result.status !== 0) process.exit(result.status ?? 1);
}

run('prisma', ['generate']);

// The console needs the dev tools (graphql-codegen, Vite): an install without them
// (`npm ci --omit=dev`) keeps whatever dist/console it has, and /console says when it has none.
const root = fileURLToPath(new URL('..', import.meta.url));
if (existsSync(`${root}node_modules/vite`) && existsSync(`${root}node_modules/@graphql-codegen/cli`)) {
  run('graphql-codegen', ['--config', 'codegen.ts', '--silent']);
  run('vite', ['build', '--config', 'src/console/vite.config.ts']);
} else {
  console.warn('console not built: Vite and graphql-codegen are dev dependencies (npm ci without --omit=dev builds it)');
}
