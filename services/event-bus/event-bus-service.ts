import { clientStream, serverStream, unary } from '../common/handlers.js';
import { InvalidArgumentError } from '../common/errors.js';
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
import type { MemoryEventLog, StartPosition } from './memory-event-log.js';
import { isValidSubjectPattern } from './subject-pattern.js';

/** Largest batch one PublishBatch message may carry. */
const MAX_BATCH = 10_000;

function checkEvent(event: Event | undefined, path: string): Event {
  if (!event) throw new InvalidArgumentError('an event is required', path);
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(event.type)) {
    throw new InvalidArgumentError('type must be dot-separated tokens such as "release.approved"', `${path}.type`);
  }
  return event;
}

function startPosition(request: SubscribeRequest): StartPosition {
  if (request.fromSequence !== undefined) return { kind: 'sequence', sequence: request.fromSequence };
  if (request.fromTime !== undefined) return { kind: 'time', time: request.fromTime };
  if (request.lastN !== undefined) return { kind: 'last', count: request.lastN };
  return { kind: 'new' };
}

/**
 * The event-bus service over an event log. Durable consumers (Ack, consumer
 * names) answer UNIMPLEMENTED in this release.
 */
export function createEventBusService(logger: Logger, log: MemoryEventLog): ServiceRegistration {
  const implementation: Partial<EventBusServer> = {
    publish: unary(logger, async (request: PublishRequest) => {
      const event = checkEvent(request.event, 'event');
      const [sequence] = log.append([event]);
      return { sequence: sequence!, id: '' };
    }),
    publishBatch: clientStream(logger, async (requests: AsyncIterable<PublishBatchRequest>) => {
      const sequences: number[] = [];
      for await (const request of requests) {
        if (request.events.length > MAX_BATCH) throw new InvalidArgumentError(`at most ${MAX_BATCH} events per message`, 'events');
        sequences.push(...log.append(request.events.map((e, i) => checkEvent(e, `events[${i}]`))));
      }
      return { sequences };
    }),
    subscribe: serverStream(logger, async (request: SubscribeRequest, write: (m: SubscribeResponse) => Promise<void>, signal) => {
      request.subjects.forEach((s, i) => {
        if (!isValidSubjectPattern(s)) throw new InvalidArgumentError(`"${s}" is not a subject pattern (tokens separated by ".", "*" or a final ">")`, `subjects[${i}]`);
      });
      if (request.consumer) throw new InvalidArgumentError('durable consumers are not supported in this release', 'consumer');
      for await (const event of log.subscribe({ subjects: request.subjects, filter: request.filter, start: startPosition(request) }, signal)) {
        await write({ event, delivery: 1 });
      }
    }),
    getTopicInfo: unary(logger, async (request) => {
      const subject = request.subject || '>';
      if (!isValidSubjectPattern(subject)) throw new InvalidArgumentError(`"${subject}" is not a subject pattern`, 'subject');
      return { ...log.info(subject), consumers: [] };
    }),
  };
  return { name: SERVICE_NAMES.eventBus, definition: EventBusDefinition, implementation };
}
