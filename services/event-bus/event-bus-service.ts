import { clientStream, serverStream, unary } from '../common/handlers.js';
import { parseDurationMs } from '../common/duration.js';
import { InvalidArgumentError } from '../common/errors.js';
import { newId } from '../common/ids.js';
import { traceAppend } from '../common/telemetry.js';
import type { ServiceRegistration } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import {
  EventBusService as EventBusDefinition,
  SERVICE_NAMES,
  type Event,
  type EventBusServer,
  type PublishBatchRequest,
  type PublishRequest,
  type SubscribeRequest,
  type SubscribeResponse,
} from '../common/proto.js';
import type { DurableConsumerOptions, EventLog, StartPosition } from './event-log.js';
import { isValidSubjectPattern } from './subject-pattern.js';

/** Largest batch one PublishBatch message may carry. */
const MAX_BATCH = 10_000;

function checkEvent(event: Event | undefined, path: string): Event {
  if (!event) throw new InvalidArgumentError('an event is required', path);
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(event.type)) {
    throw new InvalidArgumentError('type must be dot-separated tokens such as "release.approved"', `${path}.type`);
  }
  // The id is fixed here so Publish can return it whatever the backend; a
  // traced event continues its trace through a span of the bus.
  return traceAppend({ ...event, id: event.id || newId() });
}

/**
 * Events as the bus takes them in, from a publisher over gRPC or in the same
 * process: each checked, given its id and, when traced, a span of the bus.
 * @throws InvalidArgumentError naming the first bad event's field
 */
export function acceptEvents(events: readonly Event[]): Event[] {
  return events.map((e, i) => checkEvent(e, `events[${i}]`));
}

function startPosition(request: SubscribeRequest): StartPosition {
  if (request.fromSequence !== undefined) return { kind: 'sequence', sequence: request.fromSequence };
  if (request.fromTime !== undefined) return { kind: 'time', time: request.fromTime };
  if (request.lastN !== undefined) return { kind: 'last', count: request.lastN };
  return { kind: 'new' };
}

function durableConsumer(request: SubscribeRequest): DurableConsumerOptions | undefined {
  if (!request.consumer) {
    if (request.ackTimeout || request.maxDeliver) throw new InvalidArgumentError('ack_timeout and max_deliver need a durable consumer name', 'consumer');
    return undefined;
  }
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(request.consumer)) throw new InvalidArgumentError('a consumer name is 1-64 letters, digits, "_" and "-"', 'consumer');
  let ackTimeoutMs: number | undefined;
  if (request.ackTimeout) {
    ackTimeoutMs = parseDurationMs(request.ackTimeout);
    if (ackTimeoutMs === undefined || ackTimeoutMs <= 0) throw new InvalidArgumentError(`"${request.ackTimeout}" is not a duration such as 30s`, 'ack_timeout');
  }
  return { name: request.consumer, ackTimeoutMs, maxDeliver: request.maxDeliver || undefined };
}

/**
 * The event-bus service over an event log (in-process or JetStream): Publish,
 * PublishBatch, Subscribe (live or durable consumer), Ack and GetTopicInfo.
 */
export function createEventBusService(logger: Logger, log: EventLog): ServiceRegistration {
  const implementation: EventBusServer = {
    publish: unary(logger, async (request: PublishRequest) => {
      const event = checkEvent(request.event, 'event');
      const [sequence] = await log.append([event]);
      return { sequence: sequence!, id: event.id };
    }),
    publishBatch: clientStream(logger, async (requests: AsyncIterable<PublishBatchRequest>) => {
      const sequences: number[] = [];
      for await (const request of requests) {
        if (request.events.length > MAX_BATCH) throw new InvalidArgumentError(`at most ${MAX_BATCH} events per message`, 'events');
        sequences.push(...(await log.append(acceptEvents(request.events))));
      }
      return { sequences };
    }),
    subscribe: serverStream(logger, async (request: SubscribeRequest, write: (m: SubscribeResponse) => Promise<void>, signal) => {
      request.subjects.forEach((s, i) => {
        if (!isValidSubjectPattern(s)) throw new InvalidArgumentError(`"${s}" is not a subject pattern (tokens separated by ".", "*" or a final ">")`, `subjects[${i}]`);
      });
      const options = { subjects: request.subjects, filter: request.filter, start: startPosition(request), consumer: durableConsumer(request) };
      for await (const { event, delivery } of await log.subscribe(options, signal)) {
        await write({ event, delivery });
      }
    }),
    ack: unary(logger, async (request) => {
      if (!request.consumer) throw new InvalidArgumentError('a consumer name is required', 'consumer');
      return { acknowledged: await log.ack(request.consumer, request.sequences) };
    }),
    getTopicInfo: unary(logger, async (request) => {
      const subject = request.subject || '>';
      if (!isValidSubjectPattern(subject)) throw new InvalidArgumentError(`"${subject}" is not a subject pattern`, 'subject');
      return await log.info(subject);
    }),
  };
  return { name: SERVICE_NAMES.eventBus, definition: EventBusDefinition, implementation };
}
