import { builder } from './builder.js';

/** The API's version, so a client can tell what it talks to. */
export const API_VERSION = '0.1.0';

builder.mutationType({});

builder.queryType({
  fields: (t) => ({
    apiVersion: t.string({
      description: 'The version of the Action Engine API.',
      resolve: () => API_VERSION,
    }),
  }),
});
