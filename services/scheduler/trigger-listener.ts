import { status, type ServiceError } from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { Batcher } from '../common/batcher.js';
import { parseDurationMs } from '../common/duration.js';
import type { Logger } from '../common/logger.js';
import { SubmitRunRequest, type Event } from '../common/proto.js';
import type { RunStore } from './run-store.js';
import type { Scheduler } from './scheduler.js';
import { eventMatches } from '../event-bus/event-match.js';
import type { EventSource } from '../event-bus/event-stream.js';
import { subjectMatcher } from '../event-bus/subject-pattern.js';

/** One `triggers:` entry of a pipeline: start a run when a matching event is published. */
export interface PipelineTrigger {
  /** Event type (or subject pattern) that starts a run, e.g. `git.push`. */
  event: string;
  /** Values the event must carry (attributes, then data; dotted paths allowed). */
  match?: Record<string, unknown>;
}

/** A registered pipeline that declares triggers. */
export interface TriggeredPipeline {
  /** What `submit` is called with, e.g. the pipeline name. */
  pipelineRef: string;
  triggers: readonly PipelineTrigger[];
  /** Declared input names; event data fields with these names become the run's inputs. */
  inputNames?: readonly string[];
}

/** Options of a TriggerListener. */
export interface TriggerListenerOptions {
  /** The event log of this process, or the bus over gRPC (remoteEventSource). */
  events: EventSource;
  /** The pipelines with triggers; asked again at most every `pipelinesRefreshMs`, so it may query a store. */
  pipelines: () => readonly TriggeredPipeline[] | Promise<readonly TriggeredPipeline[]>;
  /** How long the answer of `pipelines` is reused: a newly registered trigger applies within this delay. @default 1000 */
  pipelinesRefreshMs?: number;
  /**
   * Starts a run. The event is passed so the caller can use `event.id` in an
   * idempotency key: an event is delivered at least once.
   */
  submit: (pipelineRef: string, inputs: Record<string, string>, event: Event) => Promise<void>;
  logger: Logger;
  /** Durable consumer name: triggers published while the listener is down start their runs when it is back. @default "stagemesh-triggers" */
  consumer?: string;
  /** Redelivery of an event whose submit failed. @default "30s" */
  ackTimeout?: string;
  /** Tries per event before it is given up (and logged). @default 5 */
  maxDeliver?: number;
}

/** Statuses after which the listener subscribes again; anything else is logged and retried more slowly. */
const RESUBSCRIBE_DELAY_MS = 500;
const SLOW_RESUBSCRIBE_DELAY_MS = 5_000;

/**
 * Starts runs from events: for each event on the bus, every registered
 * pipeline whose trigger matches it is submitted once. It reads through a
 * durable consumer and acknowledges an event only after its submissions
 * succeeded, so no trigger is lost when the scheduler or the bus restarts.
 * Events about a pipeline's own runs never trigger that pipeline (no loops).
 */
export class TriggerListener {
  readonly #controller = new AbortController();
  #running?: Promise<void>;
  #stopping?: Promise<void>;
  readonly #options: Required<TriggerListenerOptions>;
  readonly #acks: Batcher<number>;
  #pipelines?: { readonly list: readonly TriggeredPipeline[]; readonly atMs: number };

  private constructor(options: TriggerListenerOptions) {
    this.#options = { consumer: 'stagemesh-triggers', ackTimeout: '30s', maxDeliver: 5, pipelinesRefreshMs: 1_000, ...options };
    const { events, consumer } = this.#options;
    // Every event on the bus passes through the listener: acknowledgements go in batches, not one call per event.
    this.#acks = new Batcher<number>({
      maxBatch: 1_000,
      maxDelayMs: 5,
      flush: async (sequences) => void (await events.ack(consumer, sequences)),
      onError: (err) => this.#options.logger.warn({ err: (err as Error).message }, 'trigger listener could not acknowledge events; will retry'),
    });
  }

  /**
   * The pipelines with triggers: the remembered list while it is fresh (no
   * promise: every event on the bus asks), else a promise of the list asked
   * again.
   */
  #triggeredPipelines(): readonly TriggeredPipeline[] | Promise<readonly TriggeredPipeline[]> {
    const now = Date.now();
    if (this.#pipelines && now - this.#pipelines.atMs < this.#options.pipelinesRefreshMs) return this.#pipelines.list;
    return (async () => {
      this.#pipelines = { list: await this.#options.pipelines(), atMs: now };
      return this.#pipelines.list;
    })();
  }

  /** Starts listening; returns at once. */
  static start(options: TriggerListenerOptions): TriggerListener {
    const listener = new TriggerListener(options);
    listener.#running = listener.#loop();
    return listener;
  }

  async #loop(): Promise<void> {
    const { events, consumer, ackTimeout, maxDeliver, logger } = this.#options;
    const signal = this.#controller.signal;
    const ackTimeoutMs = parseDurationMs(ackTimeout);
    while (!signal.aborted) {
      let delayMs = RESUBSCRIBE_DELAY_MS;
      try {
        const subscription = await events.subscribe({ subjects: [], filter: {}, start: { kind: 'new' }, consumer: { name: consumer, ackTimeoutMs, maxDeliver } }, signal);
        for await (const { event } of subscription) {
          const known = this.#triggeredPipelines();
          const pipelines = known instanceof Promise ? await known : known;
          // Most events trigger nothing: they are acknowledged without a submission to wait for.
          if (pipelines.length === 0 || (await this.#handle(event, pipelines))) this.#acks.add(event.sequence);
        }
      } catch (err) {
        if (signal.aborted) break;
        const code = (err as ServiceError).code;
        if (code !== status.UNAVAILABLE) delayMs = SLOW_RESUBSCRIBE_DELAY_MS;
        logger.warn({ err: (err as Error).message }, 'trigger listener lost its event stream; resubscribing');
      }
      await sleep(delayMs, undefined, { signal }).catch(() => undefined);
    }
  }

  /** Submits every pipeline the event triggers; false when a submission failed (the event is redelivered). */
  async #handle(event: Event, pipelines: readonly TriggeredPipeline[]): Promise<boolean> {
    let ok = true;
    for (const pipeline of pipelines) {
      if (event.attributes.pipeline === pipeline.pipelineRef) continue;
      const triggered = pipeline.triggers.some((t) => subjectMatcher([t.event])(event.type) && eventMatches(event, t.match ?? {}));
      if (!triggered) continue;
      const inputs: Record<string, string> = {};
      for (const name of pipeline.inputNames ?? []) {
        const value = (event.data ?? {})[name];
        if (value !== undefined && value !== null) inputs[name] = typeof value === 'object' ? JSON.stringify(value) : String(value);
      }
      try {
        await this.#options.submit(pipeline.pipelineRef, inputs, event);
        this.#options.logger.info({ pipeline: pipeline.pipelineRef, event: event.type, eventId: event.id }, 'event trigger started a run');
      } catch (err) {
        ok = false;
        this.#options.logger.warn({ err, pipeline: pipeline.pipelineRef, eventId: event.id }, 'event trigger could not start a run; the event will be redelivered');
      }
    }
    return ok;
  }

  /** Stops listening; safe to call twice, returns the same promise. */
  stop(): Promise<void> {
    this.#controller.abort();
    this.#stopping ??= (async () => {
      await this.#running;
      // Acknowledgements of handled events are sent before stopping, so they are not submitted twice.
      await this.#acks.close().catch(() => undefined);
    })();
    return this.#stopping;
  }
}

/**
 * A scheduler's trigger listener: pipelines declaring `triggers:` start a run
 * for each matching event, with an idempotency key made of the event id and
 * the pipeline, so a redelivered event (or one that several scheduler
 * replicas hear) starts the run once.
 */
export function startSchedulerTriggers(events: EventSource, logger: Logger, runs: Pick<RunStore, 'triggeredPipelines'>, scheduler: Pick<Scheduler, 'start'>): TriggerListener {
  return TriggerListener.start({
    events,
    logger,
    pipelines: async () => (await runs.triggeredPipelines()).map((p) => ({ pipelineRef: p.name, triggers: p.triggers, inputNames: Object.keys(p.inputs) })),
    submit: async (pipelineRef, inputs, event) =>
      void (await scheduler.start(SubmitRunRequest.fromPartial({ pipelineRef, inputs, idempotencyKey: `trigger:${event.id}:${pipelineRef}`, labels: { trigger: event.type } }))),
  });
}
