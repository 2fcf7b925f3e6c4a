import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { credentials } from '@grpc/grpc-js';
import { Batcher } from '../common/batcher.js';
import { GRPC_CHANNEL_OPTIONS } from '../common/channel-options.js';
import { CONSUL_SERVICE_NAMES, serviceTarget } from '../common/discovery.js';
import type { Logger } from '../common/logger.js';
import { CoordinatorClient, EventBusClient, OutcomeStatus, type ConnectRequest, type ConnectResponse, type Outcome, type Task } from '../common/proto.js';
import { AttemptControl, emptyEvidence, type FrameworkAdapter } from './adapters/framework-adapter.js';
import { collectArtifacts } from './adapters/artifacts.js';
import { detectAdapters } from './adapters/detect-frameworks.js';
import { WaitEventAdapter } from './adapters/wait-event-adapter.js';
import { endAttemptSpan, startAttemptSpan } from './attempt-tracing.js';

/** The worker's end of its Connect stream: a gRPC call to the coordinator, or connectInProcess's. */
export interface ConnectStream {
  write(message: ConnectRequest): unknown;
  end(): unknown;
  on(event: 'data', listener: (message: ConnectResponse) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  once(event: 'status', listener: () => void): unknown;
}

export interface WorkerOptions {
  /** Coordinator address: "host:port", or "consul://[agent host:port]" for any healthy coordinator in Consul. */
  address: string;
  /**
   * Opens the Connect stream (and again after it broke). @default a gRPC call
   * to the coordinator at `address`
   */
  connect?: () => ConnectStream;
  logger: Logger;
  /** @default "<hostname>-<random>" */
  nodeId?: string;
  /** Event-bus address for wait-event stages. @default address */
  eventBusAddress?: string;
  /** Stages run at once. @default 8 */
  capacity?: number;
  /** Frameworks to offer, checked against what this machine can run. @default every one detected */
  frameworks?: readonly string[];
  /** Adapters to offer, instead of detecting them (tests). */
  adapters?: FrameworkAdapter[];
  /**
   * How long stop() lets running stages finish. Stages still running then are
   * stopped without reporting an outcome, so their lease lapses and they run
   * again (at-least-once). @default 10000
   */
  drainTimeoutMs?: number;
}

export type WorkerState = 'connecting' | 'running' | 'draining' | 'stopped';

/**
 * The adapters a worker offers: every framework this machine can run (or only
 * those in `frameworks`), plus wait-event when it can reach the event bus.
 * @throws Error naming a requested framework that is unknown or cannot run here.
 */
export function defaultAdapters(eventBus?: EventBusClient, frameworks?: readonly string[]): FrameworkAdapter[] {
  const waitEvent = eventBus && (!frameworks || frameworks.includes('wait-event'));
  return [...detectAdapters(frameworks?.filter((f) => f !== 'wait-event')), ...(waitEvent ? [new WaitEventAdapter(eventBus)] : [])];
}

/** How long stop() waits for the coordinator to end the Connect stream. */
const STREAM_END_TIMEOUT_MS = 5_000;

/** Delay before reconnecting after the Connect stream broke. */
const RECONNECT_DELAY_MS = 500;

/**
 * A worker node: connects out to a coordinator over the Connect stream, grants
 * credits for its free capacity, runs the tasks it receives with its framework
 * adapters, renews leases by heartbeat and streams outcomes back in batches.
 */
export class Worker {
  #state: WorkerState = 'connecting';
  #stream?: ConnectStream;
  #heartbeat?: NodeJS.Timeout;
  #reconnect?: NodeJS.Timeout;
  #stopping?: Promise<void>;
  /** Set when stop() gives up on running stages: their outcomes are not reported, so they run again elsewhere or after a restart. */
  #abandoning = false;
  readonly #running = new Map<string, AttemptControl>();
  /** Places freed by finished stages since the last credit grant. */
  #freed = 0;
  /** The gRPC client behind the default `connect`. */
  readonly #client?: CoordinatorClient;
  readonly #open: () => ConnectStream;
  readonly #eventBus: EventBusClient;
  readonly #adapters: Map<string, FrameworkAdapter>;
  readonly #outcomes: Batcher<Outcome>;
  readonly nodeId: string;
  readonly capacity: number;
  /** Resolves when the worker is stopped; never rejects. */
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;

  private constructor(private readonly options: WorkerOptions) {
    this.nodeId = options.nodeId ?? `${hostname()}-${randomUUID().slice(0, 8)}`;
    this.capacity = options.capacity ?? 8;
    if (options.connect) this.#open = options.connect;
    else {
      const client = new CoordinatorClient(serviceTarget(options.address, CONSUL_SERVICE_NAMES.coordinator), credentials.createInsecure(), GRPC_CHANNEL_OPTIONS);
      this.#client = client;
      this.#open = () => client.connect();
    }
    // The event bus answers at the coordinator's address in the embedded profile.
    this.#eventBus = new EventBusClient(serviceTarget(options.eventBusAddress ?? options.address, CONSUL_SERVICE_NAMES.eventBus), credentials.createInsecure(), GRPC_CHANNEL_OPTIONS);
    this.#adapters = new Map((options.adapters ?? defaultAdapters(this.#eventBus, options.frameworks)).map((a) => [a.framework, a]));
    this.#outcomes = new Batcher<Outcome>({
      maxBatch: 500,
      maxDelayMs: 0,
      flush: async (outcomes) => {
        if (!this.#stream) throw new Error('not connected');
        this.#stream.write({ outcomes: { outcomes } });
        // The places these stages freed go back as one grant with their outcomes, not one message per stage.
        if (this.#freed > 0 && this.#state === 'running') this.#stream.write({ credits: { credits: this.#freed } });
        this.#freed = 0;
      },
    });
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  /** Starts the worker; it connects (and reconnects) in the background. */
  static async start(options: WorkerOptions): Promise<Worker> {
    const worker = new Worker(options);
    worker.#connect();
    return worker;
  }

  get state(): WorkerState {
    return this.#state;
  }

  get frameworks(): string[] {
    return [...this.#adapters.keys()];
  }

  #connect(): void {
    const stream = this.#open();
    this.#stream = stream;
    stream.write({ hello: { nodeId: this.nodeId, frameworks: this.frameworks, capacity: this.capacity, labels: { host: hostname() } } });
    stream.on('data', (message: ConnectResponse) => this.#onMessage(message));
    stream.on('error', (err) => {
      if (this.#state !== 'stopped') this.options.logger.warn({ err: err.message }, 'connection to coordinator lost');
    });
    stream.on('close', () => {
      if (this.#stream === stream) this.#stream = undefined;
      clearInterval(this.#heartbeat);
      // The coordinator took the leases of these attempts back and runs them
      // again: finishing them here would only use capacity for ignored outcomes.
      if (!this.#stopping) for (const attempt of this.#running.values()) attempt.cancel();
      if (!this.#stopping && (this.#state === 'running' || this.#state === 'connecting')) {
        this.#state = 'connecting';
        this.#reconnect = setTimeout(() => {
          if (!this.#stopping) this.#connect();
        }, RECONNECT_DELAY_MS);
      }
    });
  }

  #onMessage(message: ConnectResponse): void {
    if (message.welcome) {
      this.#state = 'running';
      this.#freed = 0;
      const free = this.capacity - this.#running.size;
      if (free > 0) this.#stream?.write({ credits: { credits: free } });
      clearInterval(this.#heartbeat);
      this.#heartbeat = setInterval(() => {
        if (this.#running.size > 0) this.#stream?.write({ heartbeat: { attemptIds: [...this.#running.keys()] } });
      }, Number(message.welcome.heartbeatIntervalMs) || 10_000);
      this.options.logger.info({ nodeId: this.nodeId, frameworks: this.frameworks, capacity: this.capacity }, 'worker connected');
    } else if (message.tasks) {
      for (const task of message.tasks.tasks) void this.#runTask(task);
    } else if (message.cancel) {
      for (const id of message.cancel.attemptIds) this.#running.get(id)?.cancel();
    } else if (message.drain) {
      this.#state = 'draining';
    }
  }

  async #runTask(task: Task): Promise<void> {
    const attempt = new AttemptControl();
    this.#running.set(task.attemptId, attempt);
    const span = startAttemptSpan(task, this.nodeId);
    const adapter = this.#adapters.get(task.framework);
    let outcome: Outcome;
    try {
      const result = adapter
        ? await adapter.run(task, attempt)
        : { status: OutcomeStatus.OUTCOME_STATUS_FAILED, evidence: emptyEvidence({ exitCode: -1, error: `this worker cannot run framework "${task.framework}"` }), outputs: {} };
      if (task.artifacts.length > 0) {
        result.evidence.artifacts = await collectArtifacts(task.artifacts, String((task.run ?? {}).cwd ?? '') || process.cwd());
      }
      outcome = { attemptId: task.attemptId, runId: task.runId, stageId: task.stageId, nodeId: this.nodeId, traceparent: task.traceparent, schedulerId: task.schedulerId, ...result };
    } catch (err) {
      outcome = {
        attemptId: task.attemptId,
        runId: task.runId,
        stageId: task.stageId,
        nodeId: this.nodeId,
        traceparent: task.traceparent,
        schedulerId: task.schedulerId,
        status: OutcomeStatus.OUTCOME_STATUS_FAILED,
        evidence: emptyEvidence({ exitCode: -1, error: `adapter failed: ${(err as Error).message}` }),
        outputs: {},
      };
    }
    this.#running.delete(task.attemptId);
    endAttemptSpan(span, outcome);
    if (this.#abandoning) return;
    this.#freed++;
    this.#outcomes.add(outcome);
  }

  /**
   * Stops taking tasks, lets running stages finish (up to the drain timeout,
   * then cancels them), sends their outcomes and closes the stream. Safe to
   * call twice: returns the same promise.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#state = 'draining';
      clearTimeout(this.#reconnect);
      const deadline = Date.now() + (this.options.drainTimeoutMs ?? 10_000);
      while (this.#running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      this.#abandoning = this.#running.size > 0;
      if (this.#abandoning) this.options.logger.warn({ attempts: this.#running.size }, 'drain timeout: stopping running stages; they will run again');
      for (const attempt of this.#running.values()) attempt.cancel();
      while (this.#running.size > 0) await new Promise((r) => setTimeout(r, 20));
      await this.#outcomes.close();
      this.#state = 'stopped';
      clearInterval(this.#heartbeat);
      const stream = this.#stream;
      if (stream) {
        // Half-close and wait for the coordinator to end the call: it has then read every outcome sent.
        const ended = new Promise<void>((resolve) => stream.once('status', () => resolve()));
        stream.end();
        await Promise.race([ended, new Promise<void>((resolve) => setTimeout(resolve, STREAM_END_TIMEOUT_MS).unref())]);
      }
      this.#client?.close();
      this.#eventBus.close();
      this.#resolveClosed();
    })();
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
