import type { ActionStatus } from '../generated/prisma/enums.js';

/** One status update as streamed to subscribers (spec §10 ActionStatusEvent, plus what filters need). */
export interface StatusEvent {
  actionId: string;
  spaceId: string;
  userId: string;
  type: string;
  status: ActionStatus;
  /** The action's status sequence number: subscribers de-duplicate and order by it. */
  seq: number;
  message: string | null;
  /** ISO 8601. */
  timestamp: string;
}

/** An action to put on (or take off) the execution queue once the transaction commits. */
export interface QueueEffect {
  id: string;
  priority: number;
  scheduledFor: Date | null;
  spaceId?: string;
  type?: string;
}

/**
 * What one transaction asks of the world outside the database. Nothing here happens unless
 * the transaction commits: status events are published, approved actions enqueued, cancelled
 * ones dequeued (a lost enqueue is repaired by the reconciler).
 */
export class TxEffects {
  readonly events: StatusEvent[] = [];
  readonly enqueue: QueueEffect[] = [];
  readonly dequeue: string[] = [];
  /** Webhook endpoints with new deliveries (outbound webhooks): their send job is queued. */
  readonly webhooks: string[] = [];
  push(event: StatusEvent): void {
    this.events.push(event);
  }
}

export type StatusEventSink = TxEffects;

/** Publishes committed status events (Redis pub/sub); failures are logged, never thrown. */
export interface StatusPublisher {
  publish(events: readonly StatusEvent[]): Promise<void>;
}

/** A stored status update of an action, as streamed to subscribers. */
export function statusEvent(
  action: { id: string; spaceId: string; userId: string; type: string },
  update: { seq: number; status: ActionStatus; message: string | null; createdAt: Date },
): StatusEvent {
  return {
    actionId: action.id,
    spaceId: action.spaceId,
    userId: action.userId,
    type: action.type,
    status: update.status,
    seq: update.seq,
    message: update.message,
    timestamp: update.createdAt.toISOString(),
  };
}
