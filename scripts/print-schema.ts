// Writes schema/schema.graphql from the Pothos schema (sorted), the API contract under review.
import { writeFileSync } from 'node:fs';
import { printSortedSchema } from '../src/resolvers/index.js';

const target = new URL('../schema/schema.graphql', import.meta.url);
writeFileSync(target, printSortedSchema());
console.log(`wrote ${target.pathname}`);
