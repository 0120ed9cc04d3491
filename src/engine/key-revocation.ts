/**
 * Revoked keys are announced on one Redis channel, so every API process drops the key from its
 * authentication cache and closes the key's WebSockets at once (each process also re-checks
 * its open connections' keys every `WS_KEY_RECHECK_SECONDS`, in case a message is lost).
 */
export function keyRevocationChannel(redisPrefix: string): string {
  return `${redisPrefix}:api-keys:revoked`;
}

export interface KeyRevokedMessage {
  apiKeyId: string;
}

const ANNOUNCE_TIMEOUT_MS = 2_000;

/**
 * Tells every API process that a key was revoked (JSON, as graphql-redis-subscriptions reads
 * it). Never throws and waits at most 2 s: the periodic re-check is the fallback.
 */
export async function announceKeyRevocation(
  publisher: { publish(channel: string, message: string): Promise<unknown> },
  redisPrefix: string,
  apiKeyId: string,
): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(resolve, ANNOUNCE_TIMEOUT_MS, false);
    });
    const sent = publisher.publish(keyRevocationChannel(redisPrefix), JSON.stringify({ apiKeyId } satisfies KeyRevokedMessage)).then(() => true as const);
    return await Promise.race([sent, timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** Listeners for revocations announced by any process (filled by the composition root). */
export class KeyRevocations {
  private readonly listeners = new Set<(apiKeyId: string) => void>();
  on(listener: (apiKeyId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  emit(apiKeyId: string): void {
    for (const listener of this.listeners) listener(apiKeyId);
  }
}
