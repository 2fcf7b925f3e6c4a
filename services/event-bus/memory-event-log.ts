import { FailedPreconditionError, InvalidArgumentError } from '../common/errors.js';
import type { Event } from '../common/proto.js';
import {
  consumerWithin,
  DEFAULT_ACK_TIMEOUT_MS,
  DEFAULT_MAX_ACK_PENDING,
  DEFAULT_MAX_DELIVER,
  DEFAULT_MAX_PENDING,
  eventMatcher,
  prepareEvent,
  sameSubjects,
  type ConsumerState,
  type Delivery,
  type DurableConsumerOptions,
  type EventLog,
  type StartPosition,
  type SubscriptionOptions,
  type TopicInfo,
} from './event-log.js';
import { PendingBuffer } from './pending-buffer.js';

export type { StartPosition, SubscriptionOptions } from './event-log.js';

/** Retention of the in-process log. */
export interface MemoryEventLogOptions {
  /** Events kept; the oldest are dropped beyond this (an event takes about 1.8 KB of memory). @default 20000 */
  maxEvents?: number;
  /** Events older than this are dropped. @default 3600000 (1 h) */
  maxAgeMs?: number;
}

interface Subscriber {
  matches: (event: Event) => boolean;
  buffer: PendingBuffer<Delivery>;
}

interface Unacked {
  deliveries: number;
  /** When it is redelivered, in ms since the epoch. */
  dueMs: number;
  /** The subscription it was last delivered to (handed back when that one leaves). */
  holder: object;
}

/** A durable consumer of the in-process log: a cursor plus its unacknowledged deliveries. */
interface MemoryConsumer {
  name: string;
  subjects: readonly string[];
  filter: Readonly<Record<string, string>>;
  matches: (event: Event) => boolean;
  ackTimeoutMs: number;
  maxDeliver: number;
  maxAckPending: number;
  /** Next sequence to look at for a first delivery. */
  cursor: number;
  unacked: Map<number, Unacked>;
  /**
   * No unacknowledged delivery is due before this time (ms since the epoch):
   * a lower bound of their `dueMs`, so a delivery looks through `unacked`
   * only when one may be due, not for every event.
   */
  nextDueMs: number;
  /** Wakes the subscriptions reading this consumer. */
  wakers: Set<() => void>;
}

/**
 * The in-process event log of the embedded profile: ordered, bounded by count
 * and age, held in memory. Its durability is that of the mesh process: events
 * and durable consumers' positions survive a subscriber's reconnect but not a
 * restart of the mesh (use the JetStream backend for that).
 */
export class MemoryEventLog implements EventLog {
  readonly backend = 'memory' as const;
  #events: Event[] = [];
  readonly #subscribers = new Set<Subscriber>();
  readonly #consumers = new Map<string, MemoryConsumer>();
  #nextSequence = 1;
  readonly #maxEvents: number;
  readonly #maxAgeMs: number;

  constructor(options: MemoryEventLogOptions = {}) {
    this.#maxEvents = options.maxEvents ?? 20_000;
    this.#maxAgeMs = options.maxAgeMs ?? 3_600_000;
  }

  async append(events: readonly Event[]): Promise<number[]> {
    return this.appendNow(events);
  }

  /** append(), synchronously: for callers in the same process that need the sequences at once. */
  appendNow(events: readonly Event[]): number[] {
    const now = new Date();
    const sequences: number[] = [];
    for (const input of events) {
      // prepareEvent returns a copy of its own: the sequence goes into it, not into a second copy.
      const event = prepareEvent(input, now);
      event.sequence = this.#nextSequence++;
      this.#events.push(event);
      sequences.push(event.sequence);
      for (const subscriber of this.#subscribers) if (subscriber.matches(event)) subscriber.buffer.push({ event, delivery: 1 });
    }
    this.#trim(now.getTime());
    for (const consumer of this.#consumers.values()) for (const wake of consumer.wakers) wake();
    return sequences;
  }

  #trim(nowMs: number): void {
    let drop = Math.max(0, this.#events.length - this.#maxEvents);
    while (drop < this.#events.length && nowMs - (this.#events[drop]!.time?.getTime() ?? nowMs) > this.#maxAgeMs) drop++;
    if (drop > 0) this.#events.splice(0, drop);
  }

  /** The stored event with this sequence, if retention kept it. */
  #at(sequence: number): Event | undefined {
    const first = this.#events[0]?.sequence ?? this.#nextSequence;
    return this.#events[sequence - first];
  }

  async info(pattern: string): Promise<TopicInfo> {
    const matches = eventMatcher([pattern], {});
    let count = 0;
    let firstSequence = 0;
    let lastSequence = 0;
    for (const event of this.#events) {
      if (!matches(event)) continue;
      count++;
      firstSequence ||= event.sequence;
      lastSequence = event.sequence;
    }
    const consumers = [...this.#consumers.values()].filter((c) => consumerWithin(pattern, c.subjects)).map((c) => this.#consumerState(c));
    return { count, firstSequence, lastSequence, consumers };
  }

  #consumerState(consumer: MemoryConsumer): ConsumerState {
    let waiting = 0;
    let firstWaiting = this.#nextSequence;
    for (let seq = Math.max(consumer.cursor, this.#events[0]?.sequence ?? consumer.cursor); seq < this.#nextSequence; seq++) {
      if (!consumer.matches(this.#at(seq)!)) continue;
      waiting++;
      firstWaiting = Math.min(firstWaiting, seq);
    }
    // Like JetStream's ack floor: everything below the first event still owed to the consumer counts as acknowledged.
    const firstOwed = Math.min(firstWaiting, ...consumer.unacked.keys());
    return { name: consumer.name, acknowledgedSequence: firstOwed - 1, lag: waiting + consumer.unacked.size };
  }

  async ack(consumerName: string, sequences: readonly number[]): Promise<number> {
    const consumer = this.#consumers.get(consumerName);
    if (!consumer) return 0;
    let acknowledged = 0;
    for (const sequence of sequences) if (consumer.unacked.delete(sequence)) acknowledged++;
    for (const wake of consumer.wakers) wake();
    return acknowledged;
  }

  async subscribe(options: SubscriptionOptions, signal: AbortSignal): Promise<AsyncIterable<Delivery>> {
    if (!options.consumer) return this.#subscribeLive(options, signal);
    if (!/^[A-Za-z0-9_-]+$/.test(options.consumer.name)) throw new InvalidArgumentError('a consumer name is letters, digits, "_" and "-"', 'consumer');
    return this.#subscribeDurable(this.#consumer(options, options.consumer), signal);
  }

  #subscribeLive(options: SubscriptionOptions, signal: AbortSignal): AsyncGenerator<Delivery> {
    const matches = eventMatcher(options.subjects, options.filter);
    const buffer = new PendingBuffer<Delivery>(options.maxPending ?? DEFAULT_MAX_PENDING);
    const start = options.start;
    if (start.kind !== 'new') {
      const backlog = this.#events.filter(matches);
      const from =
        start.kind === 'sequence'
          ? backlog.filter((e) => e.sequence >= start.sequence)
          : start.kind === 'time'
            ? backlog.filter((e) => (e.time?.getTime() ?? 0) >= start.time.getTime())
            : backlog.slice(-start.count);
      for (const event of from) buffer.push({ event, delivery: 1 });
    }
    const subscriber: Subscriber = { matches, buffer };
    this.#subscribers.add(subscriber);
    const subscribers = this.#subscribers;
    return (async function* () {
      try {
        yield* buffer.drain(signal);
      } finally {
        subscribers.delete(subscriber);
      }
    })();
  }

  #consumer(options: SubscriptionOptions, durable: DurableConsumerOptions): MemoryConsumer {
    const existing = this.#consumers.get(durable.name);
    if (existing) {
      if (!sameSubjects(existing.subjects, options.subjects) || JSON.stringify(existing.filter) !== JSON.stringify(options.filter)) {
        throw new FailedPreconditionError(`consumer "${durable.name}" already exists with subjects [${existing.subjects.join(', ')}] and another filter; use another name`);
      }
      return existing;
    }
    const consumer: MemoryConsumer = {
      name: durable.name,
      subjects: [...options.subjects],
      filter: { ...options.filter },
      matches: eventMatcher(options.subjects, options.filter),
      ackTimeoutMs: durable.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS,
      maxDeliver: durable.maxDeliver ?? DEFAULT_MAX_DELIVER,
      maxAckPending: durable.maxAckPending ?? DEFAULT_MAX_ACK_PENDING,
      cursor: this.#startSequence(options.start, eventMatcher(options.subjects, options.filter)),
      unacked: new Map(),
      nextDueMs: Number.POSITIVE_INFINITY,
      wakers: new Set(),
    };
    this.#consumers.set(durable.name, consumer);
    return consumer;
  }

  #startSequence(start: StartPosition, matches: (event: Event) => boolean): number {
    const first = this.#events[0]?.sequence ?? this.#nextSequence;
    switch (start.kind) {
      case 'new':
        return this.#nextSequence;
      case 'sequence':
        return Math.max(start.sequence, first);
      case 'time':
        return this.#events.find((e) => (e.time?.getTime() ?? 0) >= start.time.getTime())?.sequence ?? this.#nextSequence;
      case 'last': {
        const matching = this.#events.filter(matches);
        return matching[Math.max(0, matching.length - start.count)]?.sequence ?? this.#nextSequence;
      }
    }
  }

  /**
   * A durable consumer reads the log through a cursor, so it never overflows:
   * past `maxAckPending` unacknowledged deliveries it simply waits. Expired
   * deliveries go first, oldest sequence first, before any new event.
   */
  async *#subscribeDurable(consumer: MemoryConsumer, signal: AbortSignal): AsyncGenerator<Delivery> {
    const holder = {};
    let wake: (() => void) | undefined;
    let timer: NodeJS.Timeout | undefined;
    const waker = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    consumer.wakers.add(waker);
    signal.addEventListener('abort', waker);
    try {
      while (!signal.aborted) {
        const next = this.#nextDelivery(consumer, Date.now(), holder);
        if (next) {
          yield next;
          continue;
        }
        const dueMs = consumer.nextDueMs;
        await new Promise<void>((resolve) => {
          wake = resolve;
          if (Number.isFinite(dueMs)) timer = setTimeout(waker, Math.max(1, dueMs - Date.now()));
        });
        clearTimeout(timer);
      }
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', waker);
      consumer.wakers.delete(waker);
      // A subscriber that leaves hands its unacknowledged events straight back, so the next one gets them first and in order.
      for (const unacked of consumer.unacked.values()) {
        if (unacked.holder === holder) unacked.dueMs = 0;
      }
      consumer.nextDueMs = 0;
      for (const wakeOther of consumer.wakers) wakeOther();
    }
  }

  #nextDelivery(consumer: MemoryConsumer, nowMs: number, holder: object): Delivery | undefined {
    if (consumer.nextDueMs <= nowMs) {
      // Redeliver the lowest sequence that is due; the others bound the next look.
      let due: number | undefined;
      let nextDueMs = Number.POSITIVE_INFINITY;
      for (const [sequence, unacked] of consumer.unacked) {
        if (unacked.dueMs <= nowMs && (due === undefined || sequence < due)) {
          if (due !== undefined) nextDueMs = Math.min(nextDueMs, consumer.unacked.get(due)!.dueMs);
          due = sequence;
        } else nextDueMs = Math.min(nextDueMs, unacked.dueMs);
      }
      consumer.nextDueMs = nextDueMs;
      if (due !== undefined) {
        const unacked = consumer.unacked.get(due)!;
        const event = this.#at(due);
        if (!event || unacked.deliveries >= consumer.maxDeliver) {
          // Expired from retention, or delivered maxDeliver times: the consumer gives up on it.
          consumer.unacked.delete(due);
          consumer.nextDueMs = Math.min(consumer.nextDueMs, unacked.dueMs);
          return this.#nextDelivery(consumer, nowMs, holder);
        }
        unacked.deliveries++;
        unacked.dueMs = nowMs + consumer.ackTimeoutMs;
        unacked.holder = holder;
        consumer.nextDueMs = Math.min(consumer.nextDueMs, unacked.dueMs);
        return { event, delivery: unacked.deliveries };
      }
    }
    if (consumer.unacked.size >= consumer.maxAckPending) return undefined;
    consumer.cursor = Math.max(consumer.cursor, this.#events[0]?.sequence ?? consumer.cursor);
    while (consumer.cursor < this.#nextSequence) {
      const event = this.#at(consumer.cursor++)!;
      if (!consumer.matches(event)) continue;
      const dueMs = nowMs + consumer.ackTimeoutMs;
      consumer.unacked.set(event.sequence, { deliveries: 1, dueMs, holder });
      consumer.nextDueMs = Math.min(consumer.nextDueMs, dueMs);
      return { event, delivery: 1 };
    }
    return undefined;
  }

  async close(): Promise<void> {
    for (const subscriber of this.#subscribers) subscriber.buffer.end();
  }
}
