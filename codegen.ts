import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Typed documents for the operations written with `graphql(...)` in tests/ and the console
 * (src/console/app), checked against the checked-in schema/schema.graphql.
 */
const config: CodegenConfig = {
  schema: 'schema/schema.graphql',
  ignoreNoDocuments: true,
  emitLegacyCommonJSImports: false,
  generates: {
    'tests/generated/': {
      documents: ['tests/**/*.ts', '!tests/generated/**'],
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        scalars: { DateTime: 'string', JSON: 'unknown' },
      },
    },
    // The console's operations (src/console/app): typed documents as plain strings, so the
    // browser bundle needs no GraphQL parser.
    'src/console/app/generated/': {
      documents: ['src/console/app/**/*.{ts,tsx}', '!src/console/app/generated/**'],
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        documentMode: 'string',
        scalars: { DateTime: 'string', JSON: 'unknown' },
      },
    },
  },
};

export default config;
