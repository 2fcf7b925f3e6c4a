import type { EventBusBackend } from '../common/config.js';
import { newId } from '../common/ids.js';
import type { Event } from '../common/proto.js';
import { subjectMatcher } from './subject-pattern.js';

export type { EventBusBackend } from '../common/config.js';

/** Where a subscription starts reading. */
export type StartPosition =
  | { kind: 'new' }
  | { kind: 'sequence'; sequence: number }
  | { kind: 'time'; time: Date }
  | { kind: 'last'; count: number };

/** Events a subscriber may have waiting before it is cut off with RESOURCE_EXHAUSTED. */
export const DEFAULT_MAX_PENDING = 10_000;
/** How long a durable consumer has to acknowledge a delivery before it is redelivered. */
export const DEFAULT_ACK_TIMEOUT_MS = 30_000;
/** Deliveries of one event to a durable consumer before it gives up on that event. */
export const DEFAULT_MAX_DELIVER = 5;
/** Unacknowledged deliveries a durable consumer may hold before delivery pauses. */
export const DEFAULT_MAX_ACK_PENDING = 1_000;

/** A durable, named consumer: its acknowledged position outlives the subscription. */
export interface DurableConsumerOptions {
  /** Consumer name, `[A-Za-z0-9_-]+`. */
  name: string;
  /** Redeliver an unacknowledged event after this long. @default 30000 */
  ackTimeoutMs?: number;
  /** Stop redelivering an event after this many deliveries. @default 5 */
  maxDeliver?: number;
  /** Unacknowledged deliveries held at once; delivery pauses beyond (flow control). @default 1000 */
  maxAckPending?: number;
}

/** What a subscriber asks for. */
export interface SubscriptionOptions {
  /** NATS-style subject patterns over event types; empty means every event. */
  subjects: readonly string[];
  /** Attributes an event must carry with these exact values. */
  filter: Readonly<Record<string, string>>;
  /** Where reading starts; ignored when a durable consumer already exists. */
  start: StartPosition;
  /** Events a subscriber may have pending before it is cut off. @default 10000 */
  maxPending?: number;
  /** Makes the subscription a durable consumer with acknowledgements. */
  consumer?: DurableConsumerOptions;
}

/** One delivery of an event to a subscriber. */
export interface Delivery {
  event: Event;
  /** 1 for the first delivery, more for redeliveries to a durable consumer. */
  delivery: number;
}

/** A durable consumer's position, as GetTopicInfo reports it. */
export interface ConsumerState {
  name: string;
  /** Every event up to this sequence is acknowledged. */
  acknowledgedSequence: number;
  /** Matching events not yet acknowledged (waiting or delivered and unacknowledged). */
  lag: number;
}

/** Counts and bounds of the events matching a subject pattern, and the consumers reading them. */
export interface TopicInfo {
  count: number;
  firstSequence: number;
  lastSequence: number;
  consumers: ConsumerState[];
}

/**
 * The event log behind the event-bus service. Both backends (in-process and
 * NATS JetStream) pass the same conformance suite (`test/support/event-log-conformance.ts`).
 */
export interface EventLog {
  readonly backend: EventBusBackend;
  /**
   * Appends events in order, filling `id`, `time`, `datacontenttype` and
   * `sequence`; resolves to the sequences. Never waits on a subscriber.
   */
  append(events: readonly Event[]): Promise<number[]>;
  /**
   * Opens a subscription; resolves once it is in place (an event appended
   * after that is delivered to a `new` subscription), to the stream of
   * matching events from the start position, then new ones as they are appended.
   * Aborting `signal` ends the stream and releases the subscription. A subscriber more than `maxPending` events behind ends with
   * ResourceExhaustedError saying how far behind it was. With `consumer`, the
   * subscription is durable: unacknowledged events are redelivered after the
   * ack timeout, up to `maxDeliver` times.
   * @throws FailedPreconditionError when a durable consumer exists with other subjects or filter.
   */
  subscribe(options: SubscriptionOptions, signal: AbortSignal): Promise<AsyncIterable<Delivery>>;
  /** Acknowledges deliveries to a durable consumer; resolves to how many were pending and are now acknowledged. */
  ack(consumer: string, sequences: readonly number[]): Promise<number>;
  /** Counts and sequence bounds of events whose type matches the pattern, and the consumers within it. */
  info(pattern: string): Promise<TopicInfo>;
  /** Releases connections and timers; safe to call twice. Durable state stays (JetStream). */
  close(): Promise<void>;
}

/** Fills the attributes the bus owns: a CloudEvents `id` and `time` when missing, and the content type. */
export function prepareEvent(input: Event, now: Date): Event {
  return {
    ...input,
    id: input.id || newId(),
    time: input.time ?? now,
    datacontenttype: input.datacontenttype || 'application/json',
    attributes: input.attributes ?? {},
    headers: input.headers ?? {},
  };
}

/** True when an event matches the subject patterns and carries every filtered attribute. */
export function eventMatcher(subjects: readonly string[], filter: Readonly<Record<string, string>>): (event: Event) => boolean {
  const matchesSubject = subjectMatcher(subjects);
  const filters = Object.entries(filter);
  return (event) => matchesSubject(event.type) && filters.every(([k, v]) => event.attributes[k] === v);
}

/** True when a consumer reading `subjects` lies within `pattern` (GetTopicInfo lists it). */
export function consumerWithin(pattern: string, subjects: readonly string[]): boolean {
  if (pattern === '>') return true;
  const matches = subjectMatcher([pattern]);
  return subjects.length > 0 && subjects.every((s) => matches(s));
}

/** True when two subject lists name the same patterns, in any order. */
export function sameSubjects(a: readonly string[], b: readonly string[]): boolean {
  return [...a].sort().join('\n') === [...b].sort().join('\n');
}
