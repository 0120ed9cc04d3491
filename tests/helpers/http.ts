import { expect } from 'vitest';

/** One GraphQL error as the server sends it. */
export interface GraphqlError {
  message: string;
  path?: Array<string | number>;
  extensions?: { code?: string; field?: string[]; [key: string]: unknown };
}

/** A GraphQL response body. `data` is untyped: these tests send hand-written query strings. */
export interface GraphqlBody<T = any> {
  data?: T;
  errors?: GraphqlError[];
}

/** What {@link postGraphql} got back. */
export interface GraphqlResponse<T = any> {
  status: number;
  /** The parsed JSON body. */
  body: GraphqlBody<T>;
  /** The body exactly as sent, e.g. to assert that a secret never appears in it. */
  text: string;
}

/** Options for {@link postGraphql} and {@link graphqlData}. */
export interface GraphqlRequestOptions {
  /** Extra request headers (e.g. `user-agent`, `accept`); they replace the defaults of the same name. */
  headers?: Record<string, string>;
  /** Abort the request after this long (default: no limit of its own). */
  timeoutMs?: number;
}

/**
 * POSTs one GraphQL operation to `${baseUrl}/graphql` as the API key `key` (no `authorization`
 * header when it is undefined) and returns the status and body, errors and all.
 *
 * `variables` given as a string is sent as the raw JSON text of the `variables` member, for
 * values JSON.stringify cannot produce (e.g. nesting deeper than its stack).
 */
export async function postGraphql<T = any>(
  baseUrl: string,
  key: string | undefined,
  query: string,
  variables?: Record<string, unknown> | string,
  options: GraphqlRequestOptions = {},
): Promise<GraphqlResponse<T>> {
  const res = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
      ...options.headers,
    },
    body:
      typeof variables === 'string'
        ? `{"query":${JSON.stringify(query)},"variables":${variables}}`
        : JSON.stringify({ query, variables }),
    ...(options.timeoutMs === undefined ? {} : { signal: AbortSignal.timeout(options.timeoutMs) }),
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as GraphqlBody<T>, text };
}

/**
 * Like {@link postGraphql}, but returns only `data`, and fails the test, showing the errors,
 * when the response has any.
 */
export async function graphqlData(
  baseUrl: string,
  key: string | undefined,
  query: string,
  variables?: Record<string, unknown> | string,
  options?: GraphqlRequestOptions,
): Promise<any> {
  const { body } = await postGraphql(baseUrl, key, query, variables, options);
  expect(body.errors, JSON.stringify(body.errors)).toBeUndefined();
  return body.data;
}

/** One GraphQL operation POSTed with an API key, timed: what the outage tests measure. */
export async function postGraphqlTimed(
  baseUrl: string,
  key: string,
  query: string,
  variables?: Record<string, unknown>,
  timeoutMs = 30_000,
): Promise<{ status: number; ms: number; body: Record<string, any> }> {
  const started = Date.now();
  const { status, body } = await postGraphql(baseUrl, key, query, variables, { timeoutMs });
  return { status, ms: Date.now() - started, body: body as Record<string, any> };
}
