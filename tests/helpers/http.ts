/** One GraphQL operation POSTed with an API key, timed: what the outage tests measure. */
export async function postGraphqlTimed(
  baseUrl: string,
  key: string,
  query: string,
  variables?: Record<string, unknown>,
  timeoutMs = 30_000,
): Promise<{ status: number; ms: number; body: Record<string, any> }> {
  const started = Date.now();
  const res = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, ms: Date.now() - started, body: (await res.json()) as Record<string, any> };
}
