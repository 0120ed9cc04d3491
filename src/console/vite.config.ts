import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The console (/console): Preact compiled by Vite's own transformer (no Babel plugin), built into
 * dist/console by `npm run generate` (postinstall), served by src/http/console.ts. Everything the
 * page loads comes from /console/assets/ on the same server: no CDN, no inline script.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/console/',
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../../dist/console', import.meta.url)),
    emptyOutDir: true,
    // The polyfill would be inlined; every browser we support has modulepreload.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 400,
  },
});
