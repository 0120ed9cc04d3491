import type { RedisPubSub } from 'graphql-redis-subscriptions';
import type { Logger } from '../logger.js';
import { briefError, withRedisTimeout } from './infra-errors.js';
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
export function createStatusPublisher(pubsub: RedisPubSub, prefix: string, logger: Logger, timeoutMs = 2000): StatusPublisher {
  return {
    async publish(events) {
      if (!events.length) return;
      // All of a step's events are written at once, in order, on the one publisher connection
      // (before anything that follows the step, e.g. a run started here, can publish its own).
      // Bounded together: while Redis is away a request must not wait for the reconnect.
      // Subscribers catch up from the database when their connection comes back.
      const sent = events.map((event) => pubsub.publish<StatusEvent>(statusChannel(prefix, event.spaceId), event));
      try {
        await withRedisTimeout(Promise.all(sent), timeoutMs, 'the status publish');
      } catch (error) {
        const first = events[0]!;
        logger.warn({ err: briefError(error), actionId: first.actionId, seq: first.seq, events: events.length }, 'status events not published');
      }
    },
  };
}
