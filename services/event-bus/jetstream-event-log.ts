import {
  AckPolicy,
  connect,
  DeliverPolicy,
  DiscardPolicy,
  headers as natsHeaders,
  nanos,
  StorageType,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  type OrderedConsumerOptions,
} from 'nats';
import { FailedPreconditionError, InvalidArgumentError, UnavailableError } from '../common/errors.js';
import { Event } from '../common/proto.js';
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
import { PubAckMux } from './pub-ack-mux.js';

/** Longest a publish waits for JetStream's acknowledgement. */
const PUBLISH_TIMEOUT_MS = 10_000;

/** Longest one fetch of a durable consumer waits for events; also the longest a leaving subscriber waits to hand its events back. */
const DURABLE_FETCH_EXPIRES_MS = 1_000;

/** Options of the JetStream backend. */
export interface JetStreamEventLogOptions {
  /** NATS server URL(s). @default "nats://127.0.0.1:4222" */
  servers?: string | string[];
  /** JetStream stream holding the events. @default "STAGEMESH_EVENTS" */
  stream?: string;
  /** NATS subject prefix; event type `stage.succeeded` is stored on `<prefix>.stage.succeeded`. @default "stagemesh.events" */
  subjectPrefix?: string;
  /** Events older than this are dropped. @default 86400000 (24 h) */
  maxAgeMs?: number;
  /** Bytes kept; the oldest events are dropped beyond this. @default 1073741824 (1 GiB) */
  maxBytes?: number;
  /** Events kept; the oldest are dropped beyond this. @default 10000000 */
  maxEvents?: number;
  /** `file` survives a NATS restart; `memory` does not. @default "file" */
  storage?: 'file' | 'memory';
  /** How long to wait for the server at start. @default 5000 */
  connectTimeoutMs?: number;
}

/** Options after defaults. */
type ResolvedOptions = Required<JetStreamEventLogOptions>;

/** Applies the defaults and checks names. @throws InvalidArgumentError naming the bad option. */
export function resolveJetStreamOptions(options: JetStreamEventLogOptions = {}): ResolvedOptions {
  const resolved: ResolvedOptions = {
    servers: 'nats://127.0.0.1:4222',
    stream: 'STAGEMESH_EVENTS',
    subjectPrefix: 'stagemesh.events',
    maxAgeMs: 86_400_000,
    maxBytes: 1024 ** 3,
    maxEvents: 10_000_000,
    storage: 'file',
    connectTimeoutMs: 5_000,
    ...options,
  };
  if (!/^[A-Za-z0-9_-]+$/.test(resolved.stream)) throw new InvalidArgumentError('a stream name is letters, digits, "_" and "-"', 'stream');
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(resolved.subjectPrefix)) throw new InvalidArgumentError('a subject prefix is dot-separated tokens', 'subjectPrefix');
  for (const key of ['maxAgeMs', 'maxBytes', 'maxEvents', 'connectTimeoutMs'] as const) {
    if (!(resolved[key] > 0)) throw new InvalidArgumentError('must be positive', key);
  }
  return resolved;
}

/** A subscriber of the shared tail. */
interface TailSubscriber {
  matches: (event: Event) => boolean;
  buffer: PendingBuffer<Delivery>;
  /** Last sequence the tail saw while this subscriber was attached, for the resume hint. */
  lastSequence: number;
}

interface Tail {
  subscribers: Set<TailSubscriber>;
  pump: Promise<void>;
}

/** What a durable consumer was created for, kept in its description to refuse a mismatching reuse. */
interface ConsumerScope {
  subjects: string[];
  filter: Record<string, string>;
}

/**
 * The event log of the distributed profile, on NATS JetStream: one stream,
 * file storage, limits by age, bytes and count (oldest dropped first).
 * Subscriptions are ordered consumers; durable consumers are JetStream
 * durable pull consumers with explicit acks, `ack_wait` and `max_deliver`,
 * so their position survives a restart of the event-bus and of NATS.
 */
export class JetStreamEventLog implements EventLog {
  readonly backend = 'jetstream' as const;
  /** Delivered, unacknowledged messages of durable consumers, by consumer and sequence. */
  readonly #inflight = new Map<string, Map<number, JsMsg>>();
  readonly #subscriptions = new Set<ConsumerMessages>();
  readonly #fetches = new Set<ConsumerMessages>();
  #tail?: Promise<Tail>;
  #closing?: Promise<void>;
  readonly #acks: PubAckMux;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly options: ResolvedOptions,
  ) {
    this.#acks = new PubAckMux(nc, PUBLISH_TIMEOUT_MS);
  }

  /**
   * Connects to NATS and creates (or updates the limits of) the stream.
   * @throws UnavailableError when NATS or JetStream cannot be reached.
   */
  static async open(options: JetStreamEventLogOptions = {}): Promise<JetStreamEventLog> {
    const resolved = resolveJetStreamOptions(options);
    let nc: NatsConnection;
    try {
      nc = await connect({ servers: resolved.servers, timeout: resolved.connectTimeoutMs, maxReconnectAttempts: -1 });
    } catch (err) {
      throw new UnavailableError(`cannot reach NATS at ${String(resolved.servers)}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const jsm = await nc.jetstreamManager({ timeout: resolved.connectTimeoutMs });
      const config = {
        name: resolved.stream,
        subjects: [`${resolved.subjectPrefix}.>`],
        max_age: nanos(resolved.maxAgeMs),
        max_bytes: resolved.maxBytes,
        max_msgs: resolved.maxEvents,
        discard: DiscardPolicy.Old,
        // Direct gets answer GetTopicInfo's "first event of a pattern" without a consumer.
        allow_direct: true,
        storage: resolved.storage === 'file' ? StorageType.File : StorageType.Memory,
      };
      try {
        await jsm.streams.info(resolved.stream);
        await jsm.streams.update(resolved.stream, config);
      } catch (err) {
        if (!/stream not found/i.test((err as Error).message)) throw err;
        await jsm.streams.add(config);
      }
      return new JetStreamEventLog(nc, nc.jetstream(), jsm, resolved);
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw new UnavailableError(`JetStream is not available at ${String(resolved.servers)}: ${(err as Error).message}`, { cause: err });
    }
  }

  #subject(pattern: string): string {
    return pattern === '>' ? `${this.options.subjectPrefix}.>` : `${this.options.subjectPrefix}.${pattern}`;
  }

  /** One server-side filter when there is one pattern; otherwise the whole stream, filtered here (NATS 2.9 takes one filter). */
  #filterSubject(subjects: readonly string[]): string {
    return subjects.length === 1 ? this.#subject(subjects[0]!) : `${this.options.subjectPrefix}.>`;
  }

  #decode(m: JsMsg): Event {
    return { ...Event.decode(m.data), sequence: m.seq };
  }

  async append(events: readonly Event[]): Promise<number[]> {
    const now = new Date();
    const stored = events.map((input) => {
      const event = prepareEvent(input, now);
      const h = natsHeaders();
      // The id doubles as JetStream's deduplication id, so a retried publish is stored once.
      h.set('Nats-Msg-Id', event.id);
      // Trace context and user headers travel as NATS headers too, so raw NATS tools see them.
      for (const [k, v] of Object.entries(event.headers)) h.set(k, v);
      return this.#acks.publish(this.#subject(event.type), Event.encode({ ...event, sequence: 0 }).finish(), h);
    });
    return Promise.all(stored);
  }

  async subscribe(options: SubscriptionOptions, signal: AbortSignal): Promise<AsyncIterable<Delivery>> {
    if (options.consumer) return this.#subscribeDurable(options, options.consumer, signal);
    return options.start.kind === 'new' ? this.#subscribeTail(options, signal) : this.#subscribeLive(options, signal);
  }

  /** The one ordered consumer at the end of the stream that every `new` subscription of this process shares. */
  #openTail(): Promise<Tail> {
    this.#tail ??= (async () => {
      const consumer = await this.js.consumers.get(this.options.stream, { filterSubjects: `${this.options.subjectPrefix}.>`, deliver_policy: DeliverPolicy.New });
      const subscribers = new Set<TailSubscriber>();
      // Callback mode: each message is fanned out as it arrives, without an async iterator step per message.
      const messages = await consumer.consume({
        max_messages: 4096,
        callback: (m) => {
          const event = this.#decode(m);
          for (const subscriber of subscribers) {
            subscriber.lastSequence = event.sequence;
            if (subscriber.matches(event)) subscriber.buffer.push({ event, delivery: 1 });
          }
        },
      });
      this.#subscriptions.add(messages);
      const pump = messages.closed().then((err) => {
        this.#tail = undefined;
        for (const subscriber of subscribers) subscriber.buffer.end(err ? new UnavailableError(`event stream from JetStream ended: ${err.message}`, { cause: err }) : undefined);
      });
      return { subscribers, pump };
    })();
    return this.#tail;
  }

  /**
   * A `new` subscription joins the shared tail: NATS delivers each event once
   * to this process, which fans it out to the matching subscribers' bounded
   * buffers, as the in-process log does.
   */
  async #subscribeTail(options: SubscriptionOptions, signal: AbortSignal): Promise<AsyncIterable<Delivery>> {
    const tail = await this.#openTail();
    const subscriber: TailSubscriber = {
      matches: eventMatcher(options.subjects, options.filter),
      lastSequence: 0,
      buffer: new PendingBuffer<Delivery>(options.maxPending ?? DEFAULT_MAX_PENDING, () => `resume with from_sequence ${subscriber.lastSequence + 1}`),
    };
    tail.subscribers.add(subscriber);
    return (async function* () {
      try {
        yield* subscriber.buffer.drain(signal);
      } finally {
        tail.subscribers.delete(subscriber);
      }
    })();
  }

  #orderedStart(start: StartPosition): Partial<OrderedConsumerOptions> {
    switch (start.kind) {
      case 'new':
        return { deliver_policy: DeliverPolicy.New };
      case 'sequence':
        return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, start.sequence) };
      case 'time':
        return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: start.time.toISOString() };
      case 'last':
        // The last N matching events are found by reading the matching backlog once, keeping N (attribute filters apply here).
        return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: 1 };
    }
  }

  /**
   * A live subscription: an ordered consumer whose messages a pump moves into
   * the subscriber's bounded buffer, so a slow reader never slows NATS, the
   * publishers or the other subscribers; it is cut off when it falls behind.
   */
  async #subscribeLive(options: SubscriptionOptions, signal: AbortSignal): Promise<AsyncIterable<Delivery>> {
    const matches = eventMatcher(options.subjects, options.filter);
    let lastSequence = 0;
    const buffer = new PendingBuffer<Delivery>(options.maxPending ?? DEFAULT_MAX_PENDING, () => `resume with from_sequence ${lastSequence + 1}`);
    const consumer = await this.js.consumers.get(this.options.stream, { filterSubjects: this.#filterSubject(options.subjects), ...this.#orderedStart(options.start) });
    const start = options.start;
    let backlog = start.kind === 'last' ? await this.#storedCount(this.#filterSubject(options.subjects)) : 0;
    const messages = await consumer.consume({ max_messages: 512 });
    this.#subscriptions.add(messages);
    const ring: Event[] = [];
    const flushRing = () => {
      for (const event of ring.splice(0)) buffer.push({ event, delivery: 1 });
    };
    const pump = (async () => {
      for await (const m of messages) {
        const event = this.#decode(m);
        lastSequence = event.sequence;
        if (backlog > 0) {
          if (matches(event)) {
            ring.push(event);
            if (start.kind === 'last' && ring.length > start.count) ring.shift();
          }
          if (--backlog === 0) flushRing();
          continue;
        }
        if (matches(event)) buffer.push({ event, delivery: 1 });
      }
    })().then(
      () => buffer.end(),
      (err: unknown) => buffer.end(new UnavailableError(`event stream from JetStream ended: ${(err as Error).message}`, { cause: err })),
    );
    let released: Promise<void> | undefined;
    const release = () =>
      (released ??= (async () => {
        signal.removeEventListener('abort', onAbort);
        this.#subscriptions.delete(messages);
        messages.stop();
        await pump;
        await consumer.delete().catch(() => undefined);
      })());
    const onAbort = () => void release();
    signal.addEventListener('abort', onAbort);
    return (async function* () {
      try {
        yield* buffer.drain(signal);
      } finally {
        await release();
      }
    })();
  }

  /** Events stored on the subjects matching a NATS filter subject. */
  async #storedCount(filterSubject: string): Promise<number> {
    const { state } = await this.jsm.streams.info(this.options.stream, { subjects_filter: filterSubject });
    return Object.values(state.subjects ?? {}).reduce((a, b) => a + b, 0);
  }

  #consumerName(name: string): string {
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new InvalidArgumentError('a consumer name is letters, digits, "_" and "-"', 'consumer');
    return name;
  }

  async #ensureConsumer(options: SubscriptionOptions, durable: DurableConsumerOptions): Promise<string> {
    const name = this.#consumerName(durable.name);
    const scope: ConsumerScope = { subjects: [...options.subjects], filter: { ...options.filter } };
    try {
      const info = await this.jsm.consumers.info(this.options.stream, name);
      const existing = JSON.parse(info.config.description || '{"subjects":[],"filter":{}}') as ConsumerScope;
      if (!sameSubjects(existing.subjects, scope.subjects) || JSON.stringify(existing.filter) !== JSON.stringify(scope.filter)) {
        throw new FailedPreconditionError(`consumer "${name}" already exists with subjects [${existing.subjects.join(', ')}] and another filter; use another name`);
      }
      return name;
    } catch (err) {
      if (!/consumer not found/i.test((err as Error).message)) throw err;
    }
    const start = options.start;
    const config: Partial<ConsumerConfig> = {
      durable_name: name,
      description: JSON.stringify(scope),
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(durable.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS),
      max_deliver: durable.maxDeliver ?? DEFAULT_MAX_DELIVER,
      max_ack_pending: durable.maxAckPending ?? DEFAULT_MAX_ACK_PENDING,
      filter_subject: this.#filterSubject(options.subjects),
    };
    if (start.kind === 'sequence') Object.assign(config, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, start.sequence) });
    else if (start.kind === 'time') Object.assign(config, { deliver_policy: DeliverPolicy.StartTime, opt_start_time: start.time.toISOString() });
    else if (start.kind === 'last') Object.assign(config, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: await this.#lastNStart(options, start.count) });
    else config.deliver_policy = DeliverPolicy.New;
    await this.jsm.consumers.add(this.options.stream, config);
    return name;
  }

  /** Sequence of the N-th last event of the filter subject (attribute filters are not applied to the start of a durable consumer). */
  async #lastNStart(options: SubscriptionOptions, count: number): Promise<number> {
    const info = await this.jsm.streams.info(this.options.stream);
    return Math.max(1, info.state.last_seq - count + 1);
  }

  /**
   * A durable consumer: the server holds the position and redelivers what is
   * not acknowledged in time. Events its attribute filter rejects are
   * acknowledged here. A subscriber that leaves hands back what it held
   * unacknowledged (nak), so the next subscriber gets it first and in order.
   */
  async #subscribeDurable(options: SubscriptionOptions, durable: DurableConsumerOptions, signal: AbortSignal): Promise<AsyncIterable<Delivery>> {
    const name = await this.#ensureConsumer(options, durable);
    return this.#readDurable(name, options, durable, signal);
  }

  async *#readDurable(name: string, options: SubscriptionOptions, durable: DurableConsumerOptions, signal: AbortSignal): AsyncGenerator<Delivery> {
    const matches = eventMatcher(options.subjects, options.filter);
    const consumer = await this.js.consumers.get(this.options.stream, name);
    const batchSize = Math.min(256, durable.maxAckPending ?? DEFAULT_MAX_ACK_PENDING);
    const inflight = this.#inflight.get(name) ?? new Map<number, JsMsg>();
    this.#inflight.set(name, inflight);
    const mine = new Set<number>();
    const queue: JsMsg[] = [];
    let wake: (() => void) | undefined;
    const wakeUp = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    let leaving = false;
    let failure: unknown;
    // Bounded fetches, each read to its end, rather than an open-ended consume: when the
    // subscriber leaves, no message the server already sent is left in flight, so everything
    // not yet acknowledged can be handed back at once and in order.
    const pump = (async () => {
      while (!leaving) {
        const batch = await consumer.fetch({ max_messages: batchSize, expires: DURABLE_FETCH_EXPIRES_MS });
        this.#fetches.add(batch);
        try {
          for await (const m of batch) {
            queue.push(m);
            wakeUp();
          }
        } finally {
          this.#fetches.delete(batch);
        }
      }
    })().catch((err: unknown) => {
      if (!leaving) failure = err;
    }).finally(wakeUp);
    signal.addEventListener('abort', wakeUp);
    try {
      while (!signal.aborted) {
        const m = queue.shift();
        if (!m) {
          if (failure) throw new UnavailableError(`event stream from JetStream ended: ${(failure as Error).message}`, { cause: failure });
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        const event = this.#decode(m);
        if (!matches(event)) {
          m.ack();
          continue;
        }
        inflight.set(m.seq, m);
        mine.add(m.seq);
        yield { event, delivery: m.info.redeliveryCount };
      }
    } finally {
      leaving = true;
      signal.removeEventListener('abort', wakeUp);
      await pump;
      const handBack = [...mine].filter((seq) => inflight.has(seq)).map((seq) => inflight.get(seq)!);
      for (const m of [...handBack, ...queue].sort((a, b) => a.seq - b.seq)) m.nak();
      for (const seq of mine) inflight.delete(seq);
      await this.nc.flush().catch(() => undefined);
    }
  }

  async ack(consumer: string, sequences: readonly number[]): Promise<number> {
    const inflight = this.#inflight.get(consumer);
    if (!inflight) return 0;
    let acknowledged = 0;
    for (const sequence of sequences) {
      const m = inflight.get(sequence);
      if (!m) continue;
      m.ack();
      inflight.delete(sequence);
      acknowledged++;
    }
    return acknowledged;
  }

  async info(pattern: string): Promise<TopicInfo> {
    const stream = this.options.stream;
    const subject = this.#subject(pattern);
    const consumers: ConsumerState[] = [];
    for await (const c of this.jsm.consumers.list(stream)) {
      if (!c.config.durable_name) continue;
      const scope = JSON.parse(c.config.description || '{"subjects":[]}') as ConsumerScope;
      if (!consumerWithin(pattern, scope.subjects)) continue;
      consumers.push({ name: c.name, acknowledgedSequence: c.ack_floor.stream_seq, lag: c.num_pending + c.num_ack_pending });
    }
    if (pattern === '>') {
      const { state } = await this.jsm.streams.info(stream);
      return { count: state.messages, firstSequence: state.messages ? state.first_seq : 0, lastSequence: state.messages ? state.last_seq : 0, consumers };
    }
    const { state } = await this.jsm.streams.info(stream, { subjects_filter: subject });
    const subjects = Object.keys(state.subjects ?? {});
    const count = Object.values(state.subjects ?? {}).reduce((a, b) => a + b, 0);
    if (count === 0) return { count: 0, firstSequence: 0, lastSequence: 0, consumers };
    // The direct-get API answers "first message on or after seq 1 matching a wildcard" (not wrapped by nats.js 2.x's manager).
    const first = await this.nc.request(`$JS.API.DIRECT.GET.${stream}`, new TextEncoder().encode(JSON.stringify({ seq: 1, next_by_subj: subject })), { timeout: 5_000 });
    const lasts = await Promise.all(subjects.map((s) => this.jsm.streams.getMessage(stream, { last_by_subj: s })));
    return { count, firstSequence: Number(first.headers?.get('Nats-Sequence') ?? 0), lastSequence: Math.max(...lasts.map((m) => m.seq)), consumers };
  }

  /** Deletes the stream and its consumers (tests and `reset` tooling only). */
  async destroy(): Promise<void> {
    await this.jsm.streams.delete(this.options.stream);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const messages of this.#subscriptions) messages.stop();
      this.#acks.close();
      await this.nc.drain().catch(() => undefined);
      await this.nc.closed();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
