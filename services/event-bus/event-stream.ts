import { setTimeout as sleep } from 'node:timers/promises';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { callUnary } from '../common/grpc-client.js';
import type { EventBusClient, SubscribeRequest, SubscribeResponse } from '../common/proto.js';
import type { Delivery, EventLog, StartPosition, SubscriptionOptions } from './event-log.js';

/** A Subscribe request with every field present, for the fields given. */
export function subscribeRequest(fields: Partial<SubscribeRequest>): SubscribeRequest {
  return { subjects: [], filter: {}, consumer: '', ackTimeout: '', maxDeliver: 0, ...fields };
}

/**
 * Subscribes over gRPC and yields the deliveries as an async iterable.
 * Aborting `signal` (or leaving the loop) cancels the call; the stream ends
 * quietly then. Any other end of the call throws its ServiceError (status code kept).
 */
export async function* subscribeEvents(client: EventBusClient, request: SubscribeRequest, signal?: AbortSignal): AsyncGenerator<SubscribeResponse> {
  const call = client.subscribe(request, new Metadata());
  const onAbort = () => call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const message of call as AsyncIterable<SubscribeResponse>) yield message;
  } catch (err) {
    if ((err as ServiceError).code === status.CANCELLED && (signal?.aborted ?? true)) return;
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    call.cancel();
  }
}

/** Statuses after which a follower of the bus subscribes again, from where it stopped. */
const RESUBSCRIBE_ON = new Set<number>([
  // The bus restarted or is unreachable for a moment.
  status.UNAVAILABLE,
  // The subscriber fell more events behind than the bus holds for one; it resumes from its last sequence.
  status.RESOURCE_EXHAUSTED,
  // The server ended the stream (shutdown) without a status of its own.
  status.INTERNAL,
]);
const RESUBSCRIBE_DELAY_MS = 200;

/**
 * subscribeEvents that outlives the ends a follower can recover from: when
 * the bus ends the stream, without a status or with UNAVAILABLE,
 * RESOURCE_EXHAUSTED or INTERNAL, it subscribes again after a moment, from
 * the sequence after the last event it yielded (as `request` asked until the
 * first one), so an event the bus still holds is neither skipped nor yielded
 * twice; one it no longer holds is lost. `onResubscribe` is told each time.
 * Aborting `signal` ends it quietly; any other status throws.
 */
export async function* subscribeEventsResuming(
  client: EventBusClient,
  request: SubscribeRequest,
  signal: AbortSignal,
  onResubscribe?: (err: ServiceError) => void,
): AsyncGenerator<SubscribeResponse> {
  let last: number | undefined;
  while (!signal.aborted) {
    const next = last === undefined ? request : { ...request, newOnly: undefined, fromTime: undefined, lastN: undefined, fromSequence: last + 1 };
    try {
      for await (const message of subscribeEvents(client, next, signal)) {
        if (message.event) last = message.event.sequence;
        yield message;
      }
    } catch (err) {
      if (!RESUBSCRIBE_ON.has((err as ServiceError).code)) throw err;
      onResubscribe?.(err as ServiceError);
    }
    await sleep(RESUBSCRIBE_DELAY_MS, undefined, { signal }).catch(() => undefined);
  }
}

/**
 * Where a consumer inside the mesh reads events: the event log of its own
 * process, or the bus over gRPC (remoteEventSource). Both deliver the same events.
 */
export type EventSource = Pick<EventLog, 'subscribe' | 'ack'>;

/** Start position → the Subscribe request fields that ask for it. */
function startFields(start: StartPosition): Partial<SubscribeRequest> {
  switch (start.kind) {
    case 'sequence':
      return { fromSequence: start.sequence };
    case 'time':
      return { fromTime: start.time };
    case 'last':
      return { lastN: start.count };
    default:
      return { newOnly: true };
  }
}

/** The event bus at the other end of a gRPC client, as an EventSource. */
export function remoteEventSource(client: EventBusClient): EventSource {
  return {
    async subscribe(options: SubscriptionOptions, signal: AbortSignal): Promise<AsyncIterable<Delivery>> {
      const { consumer } = options;
      const request = subscribeRequest({
        subjects: [...options.subjects],
        filter: { ...options.filter },
        ...startFields(options.start),
        ...(consumer ? { consumer: consumer.name, ackTimeout: consumer.ackTimeoutMs ? `${consumer.ackTimeoutMs}ms` : '', maxDeliver: consumer.maxDeliver ?? 0 } : {}),
      });
      return (async function* () {
        for await (const message of subscribeEvents(client, request, signal)) if (message.event) yield { event: message.event, delivery: message.delivery };
      })();
    },
    async ack(consumer: string, sequences: readonly number[]): Promise<number> {
      return (await callUnary(client.ack.bind(client), { consumer, sequences: [...sequences] }, { timeoutMs: 10_000 })).acknowledged;
    },
  };
}
