import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Plugin } from 'graphql-yoga';
import { getOperationAST, type DocumentNode } from 'graphql';

/** The Prometheus registry of one service instance and the metrics the service records. */
export interface Metrics {
  registry: Registry;
  graphqlOperations: Counter<'type' | 'name' | 'outcome'>;
  graphqlDuration: Histogram<'type' | 'name'>;
  /** Status changes committed by this process, by action type and new status (outcomes: COMPLETED, FAILED, …). */
  actionStatusChanges: Counter<'type' | 'status'>;
}

/** Queue depth by job state, read from BullMQ at scrape time. */
export function registerQueueDepth(metrics: Metrics, counts: () => Promise<Record<string, number>>): void {
  new Gauge({
    name: 'action_engine_queue_jobs',
    help: 'Execution queue jobs by state (waiting, prioritized, delayed, active, failed).',
    labelNames: ['state'],
    registers: [metrics.registry],
    async collect() {
      for (const [state, n] of Object.entries(await counts())) this.set({ state }, n);
    },
  });
}

/**
 * A registry per instance (not prom-client's global one), so that several servers in one
 * process — as in the tests — do not fight over metric names.
 */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'action_engine_' });
  return {
    registry,
    graphqlOperations: new Counter({
      name: 'action_engine_graphql_operations_total',
      help: 'GraphQL operations executed, by operation type, name and outcome (ok | error).',
      labelNames: ['type', 'name', 'outcome'],
      registers: [registry],
    }),
    graphqlDuration: new Histogram({
      name: 'action_engine_graphql_operation_duration_seconds',
      help: 'Time to execute a GraphQL query or mutation, or to set up a subscription.',
      labelNames: ['type', 'name'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    actionStatusChanges: new Counter({
      name: 'action_engine_action_status_changes_total',
      help: 'Action status updates committed by this process, by action type and status.',
      labelNames: ['type', 'status'],
      registers: [registry],
    }),
  };
}

/** Distinct operation names one process labels; later new names count as `other`. */
export const MAX_OPERATION_NAMES = 100;

/**
 * Label values for an operation. Names come from clients, so they are bounded: only operations
 * of an authenticated caller that passed validation (they reach execution) carry their name, up
 * to {@link MAX_OPERATION_NAMES} distinct names per process (then `other`); without a valid key
 * the name is `unauthenticated`.
 */
function labeller() {
  const names = new Set<string>();
  return (document: DocumentNode, operationName: string | null | undefined, authenticated: boolean) => {
    const op = getOperationAST(document, operationName ?? undefined);
    const type = op?.operation ?? 'unknown';
    if (!authenticated) return { type, name: 'unauthenticated' };
    const name = (op?.name?.value ?? 'anonymous').slice(0, 64);
    if (names.has(name)) return { type, name };
    if (names.size >= MAX_OPERATION_NAMES) return { type, name: 'other' };
    names.add(name);
    return { type, name };
  };
}

const isAuthenticated = (contextValue: unknown) =>
  typeof contextValue === 'object' && contextValue !== null && (contextValue as { principal?: unknown }).principal != null;

/**
 * Counts and times operations at the envelop level, so HTTP and graphql-ws are both covered.
 */
export function useOperationMetrics(metrics: Metrics): Plugin {
  const describe = labeller();
  const record = (document: DocumentNode, operationName: string | null | undefined, contextValue: unknown) => {
    const labels = describe(document, operationName, isAuthenticated(contextValue));
    const end = metrics.graphqlDuration.startTimer(labels);
    return (hasErrors: boolean) => {
      end();
      metrics.graphqlOperations.inc({ ...labels, outcome: hasErrors ? 'error' : 'ok' });
    };
  };
  return {
    onExecute({ args }) {
      const done = record(args.document, args.operationName, args.contextValue);
      return {
        onExecuteDone({ result }) {
          done('errors' in result && Array.isArray(result.errors) && result.errors.length > 0);
        },
      };
    },
    onSubscribe({ args }) {
      const done = record(args.document, args.operationName, args.contextValue);
      return {
        onSubscribeResult({ result }) {
          done('errors' in result && Array.isArray((result as { errors?: unknown[] }).errors));
        },
        onSubscribeError() {
          done(true);
        },
      };
    },
  };
}
