import type { App } from './app.js';

/** Who is calling. Resolved from the API key on every operation (identity lands with the lifecycle issue). */
export interface Principal {
  id: string;
  spaceId: string;
  role: 'AGENT' | 'APPROVER' | 'OPERATOR' | 'ANALYST' | 'ADMIN';
  userId: string | null;
}

/** What every resolver receives: the services of the composition root and the caller. */
export interface GraphQLContext {
  app: App;
  principal: Principal | null;
  /** The API key that identified the caller (revocation ends its subscriptions). */
  apiKeyId?: string | null;
  ip: string | null;
  userAgent: string | null;
}
