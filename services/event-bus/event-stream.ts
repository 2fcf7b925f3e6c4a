import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { EventBusClient, SubscribeRequest, SubscribeResponse } from '../common/proto.js';

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
