import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // graphql 16 ships CommonJS (main) and ESM (module) copies. Node loads the CommonJS one for
    // every dependency; Vite would hand our own files the ESM one, and graphql refuses types
    // from "another module or realm". Pin the one Node uses.
    alias: [{ find: /^graphql$/, replacement: 'graphql/index.js' }],
  },
  test: {
    include: ['tests/**/*.test.ts'],
    // Files run in parallel, each in its own process; every integration file has its own
    // database and Redis prefix (tests/helpers), so they never see each other's data.
    pool: 'forks',
    // Two files at a time (Vitest's default on 2 cores is one): they mostly wait on PostgreSQL,
    // Redis, timers and child processes, so two overlap well and the suite stays under 10 minutes.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 10_000,
  },
});
