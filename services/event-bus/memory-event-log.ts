import { randomUUID } from 'node:crypto';
import { ResourceExhaustedError } from '../common/errors.js';
import type { Event } from '../common/proto.js';
import { subjectMatcher } from './subject-pattern.js';

/** Where a subscription starts reading. */
export type StartPosition = { kind: 'new' } | { kind: 'sequence'; sequence: number } | { kind: 'time'; time: Date } | { kind: 'last'; count: number };

export interface SubscriptionOptions {
  subjects: readonly string[];
  /** Attributes an event must carry with these exact values. */
  filter: Readonly<Record<string, string>>;
  start: StartPosition;
  /** Events a subscriber may have pending before it is cut off. @default 10000 */
  maxPending?: number;
}

export interface MemoryEventLogOptions {
  /** Events kept; the oldest are dropped beyond this. @default 100000 */
  maxEvents?: number;
  /** Events older than this are dropped. @default 3600000 (1 h) */
  maxAgeMs?: number;
}

interface Subscriber {
  matches: (event: Event) => boolean;
  push: (event: Event) => void;
}

/**
 * The in-process event log of the embedded profile: ordered, bounded by count
 * and age, held in memory (events do not survive a restart of the mesh).
 */
export class MemoryEventLog {
  readonly #events: Event[] = [];
  readonly #subscribers = new Set<Subscriber>();
  #nextSequence = 1;
  readonly #maxEvents: number;
  readonly #maxAgeMs: number;

  constructor(options: MemoryEventLogOptions = {}) {
    this.#maxEvents = options.maxEvents ?? 100_000;
    this.#maxAgeMs = options.maxAgeMs ?? 3_600_000;
  }

  /** Appends events in order, filling id, time and sequence; returns the sequences. */
  append(events: readonly Event[]): number[] {
    const now = new Date();
    const sequences: number[] = [];
    for (const input of events) {
      const event: Event = {
        ...input,
        id: input.id || randomUUID(),
        sequence: this.#nextSequence++,
        time: input.time ?? now,
        datacontenttype: input.datacontenttype || 'application/json',
      };
      this.#events.push(event);
      sequences.push(event.sequence);
      for (const subscriber of this.#subscribers) if (subscriber.matches(event)) subscriber.push(event);
    }
    this.#trim(now.getTime());
    return sequences;
  }

  #trim(nowMs: number): void {
    let drop = Math.max(0, this.#events.length - this.#maxEvents);
    while (drop < this.#events.length && nowMs - (this.#events[drop]!.time?.getTime() ?? nowMs) > this.#maxAgeMs) drop++;
    if (drop > 0) this.#events.splice(0, drop);
  }

  /** Counts and sequence bounds of the events whose subject matches the pattern. */
  info(pattern: string): { count: number; firstSequence: number; lastSequence: number } {
    const matches = subjectMatcher([pattern]);
    let count = 0;
    let firstSequence = 0;
    let lastSequence = 0;
    for (const event of this.#events) {
      if (!matches(event.type)) continue;
      count++;
      firstSequence ||= event.sequence;
      lastSequence = event.sequence;
    }
    return { count, firstSequence, lastSequence };
  }

  /**
   * Streams matching events: first the stored ones from the start position,
   * then new ones as they are appended. A subscriber that falls more than
   * `maxPending` events behind gets ResourceExhaustedError (never silent loss).
   */
  async *subscribe(options: SubscriptionOptions, signal: AbortSignal): AsyncGenerator<Event> {
    const subjects = subjectMatcher(options.subjects);
    const filters = Object.entries(options.filter);
    const matches = (event: Event) => subjects(event.type) && filters.every(([k, v]) => event.attributes[k] === v);
    const maxPending = options.maxPending ?? 10_000;
    const pending: Event[] = [];
    let wake: (() => void) | undefined;
    let overflow = 0;
    const subscriber: Subscriber = {
      matches,
      push: (event) => {
        if (pending.length >= maxPending) overflow++;
        else pending.push(event);
        wake?.();
      },
    };
    const start = options.start;
    const backlog = this.#events.filter(matches);
    if (start.kind === 'sequence') pending.push(...backlog.filter((e) => e.sequence >= start.sequence));
    else if (start.kind === 'time') pending.push(...backlog.filter((e) => (e.time?.getTime() ?? 0) >= start.time.getTime()));
    else if (start.kind === 'last') pending.push(...backlog.slice(-start.count));
    this.#subscribers.add(subscriber);
    const onAbort = () => wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted) {
        const event = pending.shift();
        if (event) {
          yield event;
          continue;
        }
        if (overflow > 0) {
          throw new ResourceExhaustedError(`subscriber fell behind by more than ${maxPending} events; ${overflow} events were not delivered (resume with from_sequence)`);
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#subscribers.delete(subscriber);
    }
  }
}
