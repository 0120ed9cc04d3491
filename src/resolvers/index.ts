import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { builder } from './builder.js';
import { guardIdArguments } from './id-arguments.js';
import './meta.js';
import './action.js';
import './action-mutations.js';
import './audit.js';
import './safety.js';
import './users.js';
import './execution.js';
import './webhooks.js';
import './subscriptions.js';
import './standing-approvals.js';
import './console.js';
import './stats.js';
import './condition-test.js';

let schema: GraphQLSchema | undefined;

/** The executable schema (built once; the type registrations above run at import). */
export function buildSchema(): GraphQLSchema {
  schema ??= guardIdArguments(builder.toSchema({ sortSchema: true }));
  return schema;
}

/** The SDL checked in as schema/schema.graphql. */
export function printSortedSchema(): string {
  return `${printSchema(lexicographicSortSchema(buildSchema()))}\n`;
}
