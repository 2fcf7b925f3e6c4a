import { status, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Event, EventBusClient, SubscribeResponse } from './proto.js';

/** Delay before subscribing again after the event stream broke. */
const RESUBSCRIBE_DELAY_MS = 500;

/**
 * Follows the events matching `subjects` on the bus, calling `onEvent` for
 * each, and resubscribes after the last sequence seen when the stream breaks,
 * so a consumer inside the mesh misses nothing while the bus keeps the events.
 * Returns a function that stops following.
 */
export function followEvents(client: EventBusClient, subjects: string[], onEvent: (event: Event) => void, logger: Logger, who: string): () => void {
  let stopped = false;
  let lastSequence = 0;
  let timer: NodeJS.Timeout | undefined;
  let cancel: () => void = () => undefined;
  const subscribe = () => {
    const stream = client.subscribe({
      subjects,
      filter: {},
      consumer: '',
      ackTimeout: '',
      maxDeliver: 0,
      ...(lastSequence ? { fromSequence: lastSequence + 1 } : { newOnly: true }),
    });
    cancel = () => stream.cancel();
    stream.on('data', (message: SubscribeResponse) => {
      if (!message.event) return;
      lastSequence = message.event.sequence;
      onEvent(message.event);
    });
    stream.on('error', (err: ServiceError) => {
      if (!stopped && err.code !== status.CANCELLED) logger.warn({ err: err.message, who }, 'lost the event stream; resubscribing');
    });
    stream.on('close', () => {
      if (!stopped) timer = setTimeout(subscribe, RESUBSCRIBE_DELAY_MS);
    });
  };
  subscribe();
  return () => {
    stopped = true;
    clearTimeout(timer);
    cancel();
  };
}
