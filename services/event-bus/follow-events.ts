import type { Logger } from 'pino';
import type { Event } from '../common/proto.js';
import type { EventSource } from './event-stream.js';

/** Delay before subscribing again after the event stream broke. */
const RESUBSCRIBE_DELAY_MS = 500;

/**
 * Follows the events matching `subjects` from `source` (the event log of this
 * process, or the bus over gRPC), calling `onEvent` for each, and resubscribes
 * after the last sequence seen when the stream breaks, so a consumer inside
 * the mesh misses nothing while the bus keeps the events. Returns a function
 * that stops following.
 */
export function followEvents(source: EventSource, subjects: string[], onEvent: (event: Event) => void, logger: Logger, who: string): () => void {
  const controller = new AbortController();
  const { signal } = controller;
  void (async () => {
    let lastSequence = 0;
    while (!signal.aborted) {
      try {
        const start = lastSequence ? { kind: 'sequence' as const, sequence: lastSequence + 1 } : { kind: 'new' as const };
        for await (const { event } of await source.subscribe({ subjects, filter: {}, start }, signal)) {
          lastSequence = event.sequence;
          onEvent(event);
        }
      } catch (err) {
        if (!signal.aborted) logger.warn({ err: (err as Error).message, who }, 'lost the event stream; resubscribing');
      }
      if (!signal.aborted) await new Promise((resolve) => setTimeout(resolve, RESUBSCRIBE_DELAY_MS));
    }
  })();
  return () => controller.abort();
}
