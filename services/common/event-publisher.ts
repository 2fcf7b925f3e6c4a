import type { Logger } from 'pino';
import { Batcher } from './batcher.js';
import type { Event, EventBusClient } from './proto.js';

/** Builds an event with the CloudEvents attributes filled (`id`, `time` are set by the bus). */
export function lifecycleEvent(
  type: string,
  source: string,
  subject: string,
  attributes: Record<string, string>,
  data: Record<string, unknown> = {},
  key = attributes.run_id ?? '',
): Event {
  return { id: '', sequence: 0, type, source, subject, time: undefined, datacontenttype: 'application/json', data, attributes, headers: {}, key };
}

/** Sends a batch of events over one PublishBatch client stream. */
export function publishBatchTo(client: () => EventBusClient): (events: Event[]) => Promise<void> {
  return (events) =>
    new Promise<void>((resolve, reject) => {
      const stream = client().publishBatch((err) => (err ? reject(err) : resolve()));
      stream.write({ events });
      stream.end();
    });
}

/**
 * Publishes events asynchronously in batches over PublishBatch: publish()
 * never waits for the bus, so no stage waits on an event.
 */
export class EventPublisher {
  readonly #batcher: Batcher<Event>;

  /** @param send delivers one batch, e.g. `publishBatchTo(client)`. */
  constructor(send: (events: Event[]) => Promise<void>, private readonly logger: Logger) {
    this.#batcher = new Batcher<Event>({
      maxBatch: 500,
      maxDelayMs: 5,
      flush: send,
      onError: (err) => this.logger.warn({ err }, 'publishing events failed; will retry'),
    });
  }

  /** Queues an event for publication. Never blocks; logs and drops only if 100,000 events are already waiting. */
  publish(...events: Event[]): void {
    try {
      this.#batcher.add(...events);
    } catch (err) {
      this.logger.error({ err, dropped: events.length }, 'event buffer full; events dropped');
    }
  }

  /** Sends what is waiting. */
  flush(): Promise<void> {
    return this.#batcher.flush();
  }

  close(): Promise<void> {
    return this.#batcher.close();
  }
}
