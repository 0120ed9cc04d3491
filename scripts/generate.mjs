// Runs `prisma generate` without network. Prisma's CLI insists on a native schema engine at
// start-up and downloads one when it finds none; generation itself is WebAssembly and never
// calls it, so naming any existing file is enough (see shared/notes/prisma-offline.md).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: '1', CHECKPOINT_DISABLE: '1' };
env.PRISMA_SCHEMA_ENGINE_BINARY ??= fileURLToPath(import.meta.url);
const result = spawnSync('prisma', ['generate'], { stdio: 'inherit', env, shell: false });
if (result.error) {
  console.error(`prisma generate could not start: ${result.error.message} (run npm ci first)`);
  process.exit(1);
}
process.exit(result.status ?? 1);
