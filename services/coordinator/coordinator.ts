import { Batcher } from '../common/batcher.js';
import { lifecycleEvent, type EventPublisher } from '../common/event-publisher.js';
import type { Logger } from '../common/logger.js';
import { Evidence, OutcomeStatus, type ConnectResponse, type FrameworkCapacity, type Node, type Outcome, type Task } from '../common/proto.js';
import { traceAttemptHop, TracedComponent } from '../common/telemetry.js';
import { LeaseTable } from './lease-table.js';
import { TaskQueue } from './task-queue.js';

export interface CoordinatorOptions {
  logger: Logger;
  /** Sends a batch of outcomes to the scheduler. */
  reportOutcomes: (outcomes: Outcome[]) => Promise<void>;
  publisher?: EventPublisher;
  /** @default 30000 */
  leaseTtlMs?: number;
  /**
   * Refuse tasks no connected worker can run, and hand back (as lost) the
   * queued tasks of a framework whose last worker left, so the scheduler
   * offers them to another coordinator replica. Off in one process, where
   * tasks wait for `stagemesh worker` processes to join. @default false
   */
  refuseWithoutWorkers?: boolean;
  /** This replica's id in Consul, returned by EnqueueTasks (the distributed profile). */
  instanceId?: string;
}

/** A connected worker, as the coordinator sees it. */
export interface NodeSession {
  nodeId: string;
  frameworks: ReadonlySet<string>;
  capacity: number;
  credits: number;
  draining: boolean;
  connectedAt: Date;
  labels: Record<string, string>;
  /** Outcomes of this node refused because their lease was gone. */
  refusedOutcomes?: number;
  /** Sends one message on the node's Connect stream. */
  send: (message: ConnectResponse) => void;
}

const SOURCE = 'stagemesh/coordinator';
/** How long tasks of a cancelled run are refused after the cancellation. */
const CANCELLED_RUN_MEMORY_MS = 10 * 60_000;

/** The outcome of an attempt lost with its worker, lease or coordinator: the scheduler runs the stage again. */
export function lostOutcome(task: Task, nodeId: string, error: string): Outcome {
  return {
    attemptId: task.attemptId,
    runId: task.runId,
    stageId: task.stageId,
    status: OutcomeStatus.OUTCOME_STATUS_LOST,
    // The "lost:" prefix tells the scheduler (also after a restart) not to count the attempt against retries.
    evidence: Evidence.fromPartial({ exitCode: -1, error: `lost: ${error}` }),
    outputs: {},
    nodeId,
    traceparent: task.traceparent,
    schedulerId: task.schedulerId,
  };
}

/**
 * Task queues per framework, leases and worker nodes. Tasks flow to nodes as
 * their credits allow, in batches; outcomes flow back to the scheduler in
 * batches, each applied only while its attempt holds the lease.
 */
export class Coordinator {
  readonly #queue = new TaskQueue();
  readonly #nodes = new Map<string, NodeSession>();
  /** Tasks under lease and the node running them, by attempt id. */
  readonly #running = new Map<string, { task: Task; nodeId: string }>();
  /** Attempt ids waiting in the queue. */
  readonly #queued = new Set<string>();
  /** Runs cancelled lately, by id, with when: tasks of theirs still on the way are dropped. */
  readonly #cancelledRuns = new Map<string, number>();
  /** Stages in flight per pipeline, in all and per framework, for concurrency limits. */
  readonly #inFlight = new Map<string, { total: number; byFramework: Map<string, number> }>();
  readonly #leases: LeaseTable;
  readonly #outcomes: Batcher<Outcome>;
  readonly #sweep: NodeJS.Timeout;
  #dispatchScheduled = false;
  #stopping = false;
  /** Outcomes ignored because their attempt no longer held the lease. */
  duplicateOutcomes = 0;
  readonly leaseTtlMs: number;
  readonly instanceId: string;

  constructor(private readonly options: CoordinatorOptions) {
    this.leaseTtlMs = options.leaseTtlMs ?? 30_000;
    this.instanceId = options.instanceId ?? '';
    this.#leases = new LeaseTable(this.leaseTtlMs);
    this.#outcomes = new Batcher<Outcome>({
      maxBatch: 1000,
      maxDelayMs: 0,
      flush: options.reportOutcomes,
      onError: (err) => options.logger.warn({ err }, 'reporting outcomes to the scheduler failed; will retry'),
    });
    this.#sweep = setInterval(() => this.#expireLeases(), Math.max(100, Math.min(1000, this.leaseTtlMs / 4)));
    this.#sweep.unref();
  }

  /** Interval at which workers should heartbeat: a third of the lease, so two can be lost. */
  get heartbeatIntervalMs(): number {
    return Math.max(50, Math.floor(this.leaseTtlMs / 3));
  }

  /**
   * Queues tasks and hands them to nodes with credits at once: they come in
   * batches already, and waiting for the next turn of the event loop would
   * put them behind whatever that turn brings (a wide run's thousands of
   * events). A task whose attempt is already queued or running (a batch
   * sent again after a timeout) or whose run was just cancelled is dropped.
   * With refuseWithoutWorkers, a task no connected worker can run is
   * refused. Returns how many were queued and the attempt ids refused.
   */
  enqueue(tasks: readonly Task[]): { accepted: number; refused: string[] } {
    let accepted = 0;
    const refused: string[] = [];
    const offered = this.options.refuseWithoutWorkers ? this.#offeredFrameworks() : undefined;
    for (const task of tasks) {
      if (this.#queued.has(task.attemptId) || this.#running.has(task.attemptId) || this.#cancelledRuns.has(task.runId)) continue;
      if (offered && !offered.has(task.framework)) {
        refused.push(task.attemptId);
        continue;
      }
      this.#queued.add(task.attemptId);
      this.#queue.push(task);
      accepted++;
    }
    if (accepted > 0) this.#dispatch();
    return { accepted, refused };
  }

  /** Frameworks some connected worker that is not draining runs. */
  #offeredFrameworks(): Set<string> {
    const offered = new Set<string>();
    for (const node of this.#nodes.values()) if (!node.draining) for (const f of node.frameworks) offered.add(f);
    return offered;
  }

  /** Registers a node; a reconnect with the same id replaces the old session (whose leases are lost). */
  connect(session: NodeSession): void {
    if (this.#nodes.has(session.nodeId)) this.disconnect(session.nodeId, 'replaced by a new connection');
    this.#nodes.set(session.nodeId, session);
    this.options.logger.info({ nodeId: session.nodeId, frameworks: [...session.frameworks], capacity: session.capacity }, 'node joined');
    this.options.publisher?.publish(lifecycleEvent('node.joined', SOURCE, `node/${session.nodeId}`, { node_id: session.nodeId }, { frameworks: [...session.frameworks], capacity: session.capacity }));
    this.#scheduleDispatch();
  }

  /**
   * Forgets a node; the attempts it held are reported lost so they run again.
   * With `session`, only that connection is forgotten: a late close of a
   * replaced stream leaves the node's new connection alone.
   */
  disconnect(nodeId: string, reason: string, session?: NodeSession): void {
    if (session && this.#nodes.get(nodeId) !== session) return;
    if (!this.#nodes.delete(nodeId)) return;
    const lost = this.#leases.takeNode(nodeId);
    this.#failLost(lost.map((l) => l.attemptId), nodeId, `node ${nodeId} lost: ${reason}`);
    // A node leaving while the mesh stops is expected, not a loss to warn about.
    this.options.logger[this.#stopping ? 'info' : 'warn']({ nodeId, reason, attempts: lost.length }, 'node lost');
    if (this.options.refuseWithoutWorkers && !this.#stopping) this.#handBackOrphanedTasks();
    this.options.publisher?.publish(lifecycleEvent('node.lost', SOURCE, `node/${nodeId}`, { node_id: nodeId }, { reason, attempts: lost.length }));
  }

  /** Reports the queued tasks no connected worker can run any more as lost: the scheduler sends them elsewhere. */
  #handBackOrphanedTasks(): void {
    const offered = this.#offeredFrameworks();
    for (const framework of this.#queue.frameworks()) {
      if (offered.has(framework)) continue;
      for (const task of this.#queue.removeFramework(framework)) {
        this.#queued.delete(task.attemptId);
        this.#outcomes.add(lostOutcome(task, '', `no worker for ${framework} is connected to this coordinator any more`));
      }
    }
  }

  grantCredits(nodeId: string, credits: number): void {
    const node = this.#nodes.get(nodeId);
    if (!node) return;
    node.credits = Math.min(node.credits + credits, node.capacity * 2);
    this.#scheduleDispatch();
  }

  heartbeat(nodeId: string, attemptIds: readonly string[]): void {
    this.#leases.renew(attemptIds, nodeId);
  }

  /** Accepts outcomes from a node; those whose lease is gone are ignored and counted. */
  receiveOutcomes(nodeId: string, outcomes: readonly Outcome[]): void {
    for (const outcome of outcomes) {
      if (!this.#leases.release(outcome.attemptId, nodeId)) {
        this.duplicateOutcomes++;
        const node = this.#nodes.get(nodeId);
        if (node) node.refusedOutcomes = (node.refusedOutcomes ?? 0) + 1;
        this.options.logger.debug({ attemptId: outcome.attemptId, nodeId }, 'ignored an outcome whose lease is gone');
        continue;
      }
      const running = this.#running.get(outcome.attemptId);
      this.#running.delete(outcome.attemptId);
      if (running) this.#finished(running.task);
      this.#outcomes.add({
        ...outcome,
        nodeId,
        // Back to the scheduler replica that sent the task, whatever the worker says.
        schedulerId: running?.task.schedulerId ?? outcome.schedulerId,
        traceparent: traceAttemptHop(TracedComponent.COORDINATOR, 'receive outcome', outcome.traceparent, running?.task, nodeId),
      });
    }
  }

  /** Drops queued tasks of the runs and asks nodes to stop their running attempts. */
  cancelRuns(runIds: readonly string[], reason: string): { dropped: number; stopping: number } {
    let dropped = 0;
    const now = Date.now();
    for (const [runId, at] of this.#cancelledRuns) if (now - at > CANCELLED_RUN_MEMORY_MS) this.#cancelledRuns.delete(runId);
    for (const runId of runIds) {
      this.#cancelledRuns.set(runId, now);
      for (const task of this.#queue.removeRun(runId)) {
        this.#queued.delete(task.attemptId);
        dropped++;
      }
    }
    const targets = new Set(runIds);
    const byNode = new Map<string, string[]>();
    for (const [attemptId, { task, nodeId }] of this.#running) {
      if (targets.has(task.runId)) byNode.set(nodeId, [...(byNode.get(nodeId) ?? []), attemptId]);
    }
    let stopping = 0;
    for (const [nodeId, attemptIds] of byNode) {
      this.#nodes.get(nodeId)?.send({ cancel: { attemptIds, reason } });
      stopping += attemptIds.length;
    }
    return { dropped, stopping };
  }

  drain(nodeId: string): NodeSession | undefined {
    const node = this.#nodes.get(nodeId);
    if (!node) return undefined;
    node.draining = true;
    node.send({ drain: {} });
    return node;
  }

  nodes(): Node[] {
    return [...this.#nodes.values()].map((n) => ({
      nodeId: n.nodeId,
      frameworks: [...n.frameworks],
      capacity: n.capacity,
      running: this.#leases.heldBy(n.nodeId).length,
      draining: n.draining,
      connectedAt: n.connectedAt,
      labels: n.labels,
      refusedOutcomes: n.refusedOutcomes ?? 0,
    }));
  }

  frameworks(): FrameworkCapacity[] {
    const byFramework = new Map<string, FrameworkCapacity>();
    for (const node of this.#nodes.values()) {
      for (const framework of node.frameworks) {
        const entry = byFramework.get(framework) ?? { framework, nodes: 0, capacity: 0, queued: this.#queue.sizeOf(framework) };
        entry.nodes++;
        entry.capacity += node.capacity;
        byFramework.set(framework, entry);
      }
    }
    return [...byFramework.values()].sort((a, b) => a.framework.localeCompare(b.framework));
  }

  #scheduleDispatch(): void {
    if (this.#dispatchScheduled) return;
    this.#dispatchScheduled = true;
    setImmediate(() => {
      this.#dispatchScheduled = false;
      this.#dispatch();
    });
  }

  #dispatch(): void {
    for (const node of this.#nodes.values()) {
      if (node.draining || node.credits <= 0) continue;
      const tasks = this.#queue.take(
        node.frameworks,
        node.credits,
        (task) => this.#withinLimits(task),
        (task) => this.#started(task),
      );
      if (tasks.length === 0) continue;
      node.credits -= tasks.length;
      for (const task of tasks) {
        this.#queued.delete(task.attemptId);
        this.#leases.grant(task.attemptId, node.nodeId);
        this.#running.set(task.attemptId, { task, nodeId: node.nodeId });
        task.traceparent = traceAttemptHop(TracedComponent.COORDINATOR, 'dispatch stage', task.traceparent, task, node.nodeId);
      }
      node.send({ tasks: { tasks } });
    }
  }

  /** True if starting `task` keeps its pipeline within its concurrency limits. */
  #withinLimits(task: Task): boolean {
    if (!task.pipelineMaxConcurrency && !task.frameworkMaxConcurrency) return true;
    const counts = this.#inFlight.get(task.pipelineName);
    if (task.pipelineMaxConcurrency && (counts?.total ?? 0) >= task.pipelineMaxConcurrency) return false;
    return !task.frameworkMaxConcurrency || (counts?.byFramework.get(task.framework) ?? 0) < task.frameworkMaxConcurrency;
  }

  /** Counts a task that goes out against its pipeline's limits. */
  #started(task: Task): void {
    if (!task.pipelineMaxConcurrency && !task.frameworkMaxConcurrency) return;
    let counts = this.#inFlight.get(task.pipelineName);
    if (!counts) this.#inFlight.set(task.pipelineName, (counts = { total: 0, byFramework: new Map() }));
    counts.total++;
    counts.byFramework.set(task.framework, (counts.byFramework.get(task.framework) ?? 0) + 1);
  }

  /** A task left flight (outcome, loss or cancellation): frees its place and lets waiting tasks go. */
  #finished(task: Task): void {
    if (!task.pipelineMaxConcurrency && !task.frameworkMaxConcurrency) return;
    const counts = this.#inFlight.get(task.pipelineName);
    if (counts) {
      const n = (counts.byFramework.get(task.framework) ?? 1) - 1;
      if (n > 0) counts.byFramework.set(task.framework, n);
      else counts.byFramework.delete(task.framework);
      if (--counts.total <= 0) this.#inFlight.delete(task.pipelineName);
    }
    this.#scheduleDispatch();
  }

  #expireLeases(): void {
    const expired = this.#leases.takeExpired();
    for (const lease of expired) {
      // The node may be alive but stalled: tell it to stop, its result would be ignored anyway.
      this.#nodes.get(lease.nodeId)?.send({ cancel: { attemptIds: [lease.attemptId], reason: 'lease expired' } });
      this.#failLost([lease.attemptId], lease.nodeId, `lease expired: node ${lease.nodeId} sent no heartbeat for ${this.leaseTtlMs} ms`);
    }
  }

  #failLost(attemptIds: readonly string[], nodeId: string, error: string): void {
    // While the mesh stops, nodes leave because of the shutdown itself: their
    // attempts are interrupted, not failed, and run again when the mesh resumes.
    if (this.#stopping) return;
    for (const attemptId of attemptIds) {
      const running = this.#running.get(attemptId);
      if (!running) continue;
      this.#running.delete(attemptId);
      this.#finished(running.task);
      this.#outcomes.add(lostOutcome(running.task, nodeId, error));
    }
  }

  /**
   * Starts a shutdown: outcomes still arriving are accepted, but attempts of
   * nodes that leave are no longer reported as failed (see #failLost).
   */
  beginStop(): void {
    this.#stopping = true;
  }

  /** Sends the outcomes still waiting and stops the lease sweep. */
  async stop(): Promise<void> {
    this.beginStop();
    clearInterval(this.#sweep);
    await this.#outcomes.close();
  }
}
