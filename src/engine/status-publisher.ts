import type { RedisPubSub } from 'graphql-redis-subscriptions';
import type { Logger } from '../logger.js';
import type { StatusEvent, StatusPublisher } from './status-event.js';

/** The pub/sub channel of one space's status events. */
export function statusChannel(prefix: string, spaceId: string): string {
  return `${prefix}:status:${spaceId}`;
}

/**
 * Publishes committed status events on Redis, one channel per space, so every API process
 * (whichever process made the change) can hand them to its subscribers. A failed publish is
 * logged and not retried: subscribers re-read the action's state on subscribe, and the status
 * itself is safely in the database.
 */
export function createStatusPublisher(pubsub: RedisPubSub, prefix: string, logger: Logger): StatusPublisher {
  return {
    async publish(events) {
      for (const event of events) {
        try {
          await pubsub.publish<StatusEvent>(statusChannel(prefix, event.spaceId), event);
        } catch (error) {
          logger.warn({ err: error, actionId: event.actionId, seq: event.seq }, 'status event not published');
        }
      }
    },
  };
}
