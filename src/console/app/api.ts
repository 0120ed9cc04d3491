import { createClient, type Client } from 'graphql-ws';
import type { TypedDocumentString } from './generated/graphql';

/**
 * The console's one link to the server: GraphQL over HTTP (`fetch`, the key as Bearer) and
 * graphql-ws for subscriptions (the key in connection_init's `authorization`). The key lives in
 * sessionStorage only: never a cookie, gone when the tab closes or on "Sign out".
 */

const KEY = 'action-engine.apiKey';

export function storedKey(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function storeKey(key: string | null): void {
  if (key === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, key);
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

const endpoint = new URL('/graphql', location.href).toString();

export async function request<R, V>(key: string, doc: TypedDocumentString<R, V>, variables?: V): Promise<R> {
  let res: Response;
  try {
    res = await fetch(endpoint, {
      method: 'POST',
      credentials: 'omit',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: doc.toString(), variables: variables ?? {} }),
    });
  } catch {
    throw new ApiError('The server cannot be reached. Check your connection and try again.');
  }
  let body: { data?: R; errors?: { message: string; extensions?: { code?: string } }[] };
  try {
    body = await res.json();
  } catch {
    throw new ApiError(`The server answered ${res.status} without a readable body.`);
  }
  if (body.errors?.length) {
    const first = body.errors[0]!;
    throw new ApiError(first.message, first.extensions?.code);
  }
  if (!body.data) throw new ApiError(`The server answered ${res.status} without data.`);
  return body.data;
}

let ws: { key: string; client: Client } | null = null;

function wsClient(key: string): Client {
  if (ws?.key !== key) {
    void ws?.client.dispose();
    ws = {
      key,
      client: createClient({
        url: endpoint.replace(/^http/, 'ws'),
        connectionParams: { authorization: `Bearer ${key}` },
        lazy: true,
        retryAttempts: 30,
        shouldRetry: () => true,
      }),
    };
  }
  return ws.client;
}

export function closeSubscriptions(): void {
  void ws?.client.dispose();
  ws = null;
}

/** Subscribes; returns the function that ends it. `onError` gets a message for people. */
export function subscribe<R, V>(
  key: string,
  doc: TypedDocumentString<R, V>,
  variables: V,
  onData: (data: R) => void,
  onError?: (message: string) => void,
): () => void {
  return wsClient(key).subscribe<R>(
    { query: doc.toString(), variables: variables as Record<string, unknown> },
    {
      next: (value) => {
        if (value.errors?.length) onError?.(value.errors[0]!.message);
        else if (value.data) onData(value.data as R);
      },
      error: (error) => onError?.(error instanceof Error ? error.message : 'The live connection closed.'),
      complete: () => {},
    },
  );
}

/** One page of a Relay connection, as the console's list queries select it. */
export interface ConnectionPage<N> {
  edges: Array<{ node: N }>;
  pageInfo: { hasNextPage: boolean; endCursor?: string | null };
}

/**
 * The first `pages` pages of a connection, read one after the other by cursor (each page under
 * the server's 100-item cap), for lists that grow with "Show more" and reload when something
 * changes; `more`: whether there is a next page.
 */
export async function loadPages<N>(pages: number, page: (after: string | null) => Promise<ConnectionPage<N>>): Promise<{ nodes: N[]; more: boolean }> {
  const nodes: N[] = [];
  let after: string | null = null;
  for (let i = 0; i < pages; i++) {
    const p: ConnectionPage<N> = await page(after);
    nodes.push(...p.edges.map((e) => e.node));
    if (!p.pageInfo.hasNextPage || !p.pageInfo.endCursor) return { nodes, more: false };
    after = p.pageInfo.endCursor;
  }
  return { nodes, more: true };
}
