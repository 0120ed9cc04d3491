#!/usr/bin/env node
// The command line. Runs the TypeScript sources through tsx's loader: one code path for
// development and production, no build step to forget.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
