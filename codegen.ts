import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Typed documents for the operations written with `graphql(...)` in tests/ (and, later, in
 * clients), checked against the checked-in schema/schema.graphql.
 */
const config: CodegenConfig = {
  schema: 'schema/schema.graphql',
  documents: ['tests/**/*.ts', '!tests/generated/**'],
  ignoreNoDocuments: true,
  emitLegacyCommonJSImports: false,
  generates: {
    'tests/generated/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        scalars: { DateTime: 'string', JSON: 'unknown' },
      },
    },
  },
};

export default config;
