import { callUnary } from '../common/grpc-client.js';
import type { InstanceClients } from '../common/discovery.js';
import { UnavailableError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { CancelTasksRequest, EnqueueTasksRequest, type CoordinatorClient, type Outcome, type Task } from '../common/proto.js';
import { lostOutcome } from '../coordinator/coordinator.js';

/** Longest an EnqueueTasks or CancelTasks call may take. */
const CALL_TIMEOUT_MS = 10_000;
/** Delay before offering again the tasks every coordinator refused. */
const REFUSED_RETRY_MS = 250;
/** How often attempts of runs this scheduler no longer advances are forgotten. */
const PRUNE_INTERVAL_MS = 10_000;

export interface TaskDispatcherOptions {
  logger: Logger;
  /** Applies outcomes the dispatcher makes up: attempts lost with their coordinator. */
  onLost: (outcomes: Outcome[]) => void;
  /** True while the scheduler advances the run (attempts of other runs are forgotten). */
  isActive: (runId: string) => boolean;
}

/**
 * A scheduler replica's side of task hand-off in the distributed profile:
 * batches go round-robin to the coordinator replicas Consul lists healthy;
 * tasks a coordinator refuses (no worker of theirs runs the framework) are
 * offered to the next one. It remembers which coordinator took each attempt,
 * so when a coordinator leaves Consul's healthy list (a crash, a stop) the
 * attempts it held are reported lost at once and their stages run again
 * elsewhere, instead of waiting for outcomes that will never come.
 */
export class TaskDispatcher {
  /**
   * Attempts handed to a coordinator, by attempt id, with the coordinator's
   * Consul id; forgotten with their run. An attempt that already ended and is
   * reported lost with its coordinator is ignored by the scheduler (its
   * stage holds another attempt or has ended).
   */
  readonly #placed = new Map<string, { task: Task; coordinatorId: string }>();
  readonly #unsubscribe: () => void;
  readonly #prune: NodeJS.Timeout;
  #next = 0;
  #closed = false;

  constructor(
    private readonly coordinators: InstanceClients<CoordinatorClient>,
    private readonly options: TaskDispatcherOptions,
  ) {
    this.#unsubscribe = coordinators.onGone((ids) => this.#lose(new Set(ids)));
    this.#prune = setInterval(() => {
      for (const [attemptId, { task }] of this.#placed) if (!options.isActive(task.runId)) this.#placed.delete(attemptId);
    }, PRUNE_INTERVAL_MS);
    this.#prune.unref();
  }

  /** Attempts handed to a coordinator and not yet known to have ended (for tests and diagnostics). */
  get placed(): number {
    return this.#placed.size;
  }

  /**
   * Hands a batch to the coordinators. Rejects only when no coordinator took
   * any of it (the caller's batcher sends it all again); tasks refused after
   * others were taken are offered again here, so no task goes out twice.
   */
  async send(tasks: Task[]): Promise<void> {
    const taken = await this.#offer(tasks);
    if (taken.accepted === 0) throw new UnavailableError(taken.why);
    if (taken.left.length > 0) this.#retryLater(taken.left);
  }

  async #offer(tasks: Task[]): Promise<{ accepted: number; left: Task[]; why: string }> {
    const targets = this.coordinators.list();
    if (targets.length === 0) return { accepted: 0, left: tasks, why: 'no healthy coordinator is registered in Consul' };
    let left = tasks;
    let accepted = 0;
    let why = '';
    const first = this.#next++ % targets.length;
    for (let i = 0; i < targets.length && left.length > 0; i++) {
      const { instance, client } = targets[(first + i) % targets.length]!;
      try {
        const response = await callUnary(client.enqueueTasks.bind(client), EnqueueTasksRequest.fromPartial({ tasks: left }), { timeoutMs: CALL_TIMEOUT_MS });
        const refused = new Set(response.refusedAttemptIds);
        for (const task of left) if (!refused.has(task.attemptId)) this.#placed.set(task.attemptId, { task, coordinatorId: instance.id });
        accepted += left.length - refused.size;
        left = left.filter((t) => refused.has(t.attemptId));
        if (refused.size > 0) why = `no coordinator has a worker for ${[...new Set(left.map((t) => t.framework))].join(', ')}`;
      } catch (err) {
        why = `coordinator ${instance.id}: ${(err as Error).message}`;
        this.options.logger.warn({ err: (err as Error).message, coordinator: instance.id }, 'handing tasks to a coordinator failed; trying another');
      }
    }
    return { accepted, left, why };
  }

  #retryLater(tasks: Task[]): void {
    if (this.#closed) return;
    setTimeout(() => {
      void this.#offer(tasks).then((taken) => {
        if (taken.left.length > 0) this.#retryLater(taken.left);
      });
    }, REFUSED_RETRY_MS).unref();
  }

  /** Asks every coordinator to drop and stop the tasks of these runs. */
  async cancel(runIds: string[], reason: string): Promise<void> {
    const request = CancelTasksRequest.fromPartial({ runIds, reason });
    await Promise.all(this.coordinators.list().map(({ client }) => callUnary(client.cancelTasks.bind(client), request, { timeoutMs: CALL_TIMEOUT_MS })));
  }

  #lose(gone: ReadonlySet<string>): void {
    const lost: Outcome[] = [];
    for (const [attemptId, { task, coordinatorId }] of this.#placed) {
      if (!gone.has(coordinatorId)) continue;
      this.#placed.delete(attemptId);
      if (this.options.isActive(task.runId)) lost.push(lostOutcome(task, '', `coordinator ${coordinatorId} left the mesh`));
    }
    if (lost.length > 0) {
      this.options.logger.warn({ attempts: lost.length, coordinators: [...gone] }, 'coordinators left: their attempts run again elsewhere');
      this.options.onLost(lost);
    }
  }

  close(): void {
    this.#closed = true;
    this.#unsubscribe();
    clearInterval(this.#prune);
  }
}
