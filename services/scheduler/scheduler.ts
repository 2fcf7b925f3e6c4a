import { Batcher } from '../common/batcher.js';
import { dependentsOf, isTerminal, nextStep, runStatus, type DagCandidates, type DagStage, type StageStatus } from '../common/dag.js';
import { parseDurationMs } from '../common/duration.js';
import { InvalidArgumentError } from '../common/errors.js';
import { lifecycleEvent, type EventPublisher } from '../common/event-publisher.js';
import { newId } from '../common/ids.js';
import type { Logger } from '../common/logger.js';
import { problemsToError, readPipelineOrThrow, type DocumentProblem } from '../common/pipeline-document.js';
import { Evidence, OutcomeStatus, StageState, type Run, type Event, type Outcome, type Pipeline, type Report, type Stage, type SubmitRunRequest, type Task } from '../common/proto.js';
import { admissionError } from '../compliance/admission.js';
import { checkExpressions, resolveExpressions } from './expressions.js';
import { expandedStageId, expandMatrix, matrixCombinations, MAX_MATRIX_STAGES } from './matrix.js';
import { beginRunTrace, withTraceparent, type TracedWork } from '../common/telemetry.js';
import { finishStageSpan, startStageSpan } from './stage-tracing.js';
import { isFencedError } from './run-ownership.js';
import { newRunAsStored, TERMINAL_RUN_STATES, type AttemptChange, type ChangeSet, type RunStatus, type RunStore } from './run-store.js';

export interface SchedulerOptions {
  logger: Logger;
  runs: RunStore;
  /** Asks the compliance service to validate a pipeline (once per run). */
  validate: (pipeline: Pipeline) => Promise<Report>;
  /** Hands a batch of tasks to the coordinator. */
  enqueue: (tasks: Task[]) => Promise<void>;
  /** Asks the coordinator to drop and stop the tasks of these runs. */
  cancelTasks: (runIds: string[], reason: string) => Promise<void>;
  publisher?: EventPublisher;
  /**
   * This replica's id when several schedulers share the store (the
   * distributed profile): tasks carry it, so their outcomes come back here.
   */
  instanceId?: string;
  /**
   * Takes the unfinished runs this replica is to advance (RunOwnership.claim);
   * without it, every unfinished run in the store is this scheduler's.
   */
  claimRuns?: (options: { includeOwn: boolean }) => Promise<string[]>;
  /** Called once a commit found that a peer took this replica's runs (they are forgotten here). */
  onFenced?: () => void;
  /**
   * Hands a cancellation to the replica advancing the run, when this one is
   * not; resolves to false when no other replica owns it.
   */
  forwardCancel?: (runId: string, reason: string) => Promise<boolean>;
}

interface StageRecord {
  stage: Stage;
  status: StageStatus;
  /** The attempt that holds the stage now, if any, and when it was created (ms since the epoch). */
  attemptId?: string;
  attemptStartedAtMs?: number;
  attemptNumber: number;
  /** Failed attempts so far, counted against retry.max_attempts. */
  failures: number;
  /** Attempts lost with their worker or lease (not counted against retries). */
  lost: number;
  outputs: Record<string, string>;
  retryTimer?: NodeJS.Timeout;
  /** The scheduler's span of the attempt in flight, and the trace context the stage's events carry. */
  trace?: TracedWork;
  traceparent?: string;
}

interface ActiveRun {
  runId: string;
  pipeline: Pipeline;
  inputs: Record<string, string>;
  priority: number;
  status: RunStatus;
  stages: Map<string, StageRecord>;
  deadlineTimer?: NodeJS.Timeout;
  /** W3C trace context of the run: every stage's span joins it. */
  traceparent?: string;
  /** dependentsOf(the run's stages), built on the run's first step after one ended. */
  dependents?: Map<string, DagStage[]>;
  /** Stages started and not yet ended (QUEUED or RUNNING, a retry included). */
  inFlight: number;
  /** Most stages in flight at once: see dispatchWindow. */
  window: number;
  /** Stages free to start that wait for room in the window, in the order they became free (PENDING in the store). */
  held: StageRecord[];
  /** Index of the first stage of `held` still waiting. */
  heldNext: number;
}

const SOURCE = 'stagemesh/scheduler';
/** Idempotency keys remembered in memory; older ones are found in the store. */
const MAX_REMEMBERED_KEYS = 100_000;

interface PendingStep {
  step: (changes: ChangeSet, after: (() => void)[]) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}
/** Times a stage is run again after losing its worker before it is failed. */
const MAX_LOST_ATTEMPTS = 5;

/** Least time between the starts of two commits while the scheduler is busy (see Scheduler.#spacing). */
const BUSY_COMMIT_SPACING_MS = 2;
/** Active runs from which the scheduler counts as busy: below, each commit starts at once. */
const BUSY_ACTIVE_RUNS = 16;

/** Stages a concurrency-limited run keeps queued at the coordinator beyond its limit, at least (see dispatchWindow). */
const MIN_DISPATCH_AHEAD = 64;

/**
 * Most stages of one run the scheduler starts (makes attempts and tasks for)
 * at once. Without a concurrency limit, every stage free to start. With
 * `concurrency.max`, the limit plus as many again (at least
 * MIN_DISPATCH_AHEAD): the coordinator, which enforces the limit across all
 * runs of the pipeline, then always holds a stage to start when one ends,
 * and a 5,000-stage run limited to 1,000 does not make 4,000 attempts,
 * tasks and events that would only wait in its queue.
 */
export function dispatchWindow(pipeline: Pick<Pipeline, 'concurrency'>): number {
  const max = pipeline.concurrency?.max ?? 0;
  return max > 0 ? max + Math.max(max, MIN_DISPATCH_AHEAD) : Number.POSITIVE_INFINITY;
}

/** Runs read back from the store per step when resuming after a restart. */
const RECOVER_BATCH = 200;

/**
 * What admission found in a pipeline's own text (its expressions and
 * matrices), by definition object: a registered version is one object, cached
 * by the run store, and every run of it would otherwise walk all its stages
 * again (12–22 ms for 5,000 stages).
 */
const documentProblems = new WeakMap<Pipeline, DocumentProblem[]>();

/** Most stages one run may hold once its matrices are expanded. */
const MAX_RUN_STAGES = 10_000;

/** Matrices that expand into too many stages or into stage ids used twice. */
function matrixProblems(pipeline: Pipeline) {
  const problems: { ruleId: string; fieldPath: string; message: string; fix: string }[] = [];
  const ids = new Set(pipeline.stages.filter((s) => !s.matrix || Object.keys(s.matrix).length === 0).map((s) => s.id));
  let total = ids.size;
  pipeline.stages.forEach((stage, index) => {
    if (!stage.matrix || Object.keys(stage.matrix).length === 0) return;
    const fieldPath = `stages[${index}].matrix`;
    const count = Object.values(stage.matrix).reduce((n: number, values) => n * (values as unknown[]).length, 1);
    total += count;
    if (count > MAX_MATRIX_STAGES) {
      problems.push({ ruleId: 'UCL5-matrix-size', fieldPath, message: `expands into ${count} stages, over the limit of ${MAX_MATRIX_STAGES}`, fix: 'split the matrix' });
      return;
    }
    for (const values of matrixCombinations(stage.matrix)) {
      const id = expandedStageId(stage.id, values);
      if (ids.has(id)) {
        problems.push({ ruleId: 'UCL2-duplicate-id', fieldPath, message: `expands into stage id "${id}" more than once (repeated values, or values with "," or "]")`, fix: 'give every combination its own values' });
        return;
      }
      ids.add(id);
    }
  });
  if (total > MAX_RUN_STAGES && problems.length === 0) {
    problems.push({ ruleId: 'UCL5-matrix-size', fieldPath: 'stages', message: `the run would hold ${total} stages, over the limit of ${MAX_RUN_STAGES}`, fix: 'split the pipeline or its matrices' });
  }
  return problems;
}
const DEFAULT_BACKOFF_MS = 1_000;
const DEFAULT_MAX_BACKOFF_MS = 30_000;

/** Wire outcome status → stage state it leads to (before retries are considered). */
function outcomeState(status: OutcomeStatus): StageStatus {
  if (status === OutcomeStatus.OUTCOME_STATUS_SUCCEEDED) return 'SUCCEEDED';
  if (status === OutcomeStatus.OUTCOME_STATUS_CANCELLED) return 'CANCELLED';
  return 'FAILED';
}

/** Delay before retry number `failures` (1-based): exponential with full jitter in its upper half. */
export function retryDelayMs(failures: number, backoffMs: number, maxBackoffMs: number, random = Math.random): number {
  const exponential = Math.min(maxBackoffMs, backoffMs * 2 ** (failures - 1));
  return Math.round(exponential * (0.5 + random() / 2));
}

/**
 * The scheduler's engine: owns runs and the DAG state machine. Each step
 * (a submit, a batch of outcomes, a retry, a cancel) is applied as one
 * transaction, then its tasks go to the coordinator in batches and its events
 * to the bus asynchronously. Steps run one at a time, so no run is advanced twice.
 */
export class Scheduler {
  readonly #active = new Map<string, ActiveRun>();
  readonly #listeners = new Map<string, Set<() => void>>();
  readonly #tasks: Batcher<Task>;
  /** Events of the steps being committed, published once the commit succeeded. */
  readonly #pendingEvents: Event[] = [];
  /** Stages to dispatch again within the current step (their attempt was lost). */
  readonly #pendingRetries: { run: ActiveRun; record: StageRecord }[] = [];
  /** Steps waiting for the next group commit. */
  readonly #ops: PendingStep[] = [];
  /** When the last commit began (performance.now()). */
  #lastCommitAt = Number.NEGATIVE_INFINITY;
  #flushing?: Promise<void>;
  /** Idempotency keys of runs submitted by this process (the store's unique index backs it up). */
  readonly #keys = new Map<string, string>();
  #stopped = false;
  /** Outcomes ignored because their attempt no longer held the stage. */
  ignoredOutcomes = 0;

  constructor(private readonly options: SchedulerOptions) {
    this.#tasks = new Batcher<Task>({
      maxBatch: 1000,
      maxDelayMs: 0,
      flush: options.enqueue,
      onError: (err) => options.logger.warn({ err }, 'handing tasks to the coordinator failed; will retry'),
    });
  }

  /**
   * Queues a step: `step` changes the in-memory state and records its writes
   * in `changes`; what must happen once they are durable goes into `after`.
   * Steps queued while a commit is in flight are committed together in the
   * next transaction (group commit), in the order they were queued, so no run
   * is advanced twice and a database round trip carries many state changes.
   */
  #commit<T>(step: (changes: ChangeSet, after: (() => void)[]) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#ops.push({ step, resolve: resolve as (value: unknown) => void, reject });
      this.#scheduleFlush();
    });
  }

  /**
   * Starts a commit unless one is running. It starts after the event loop has
   * read what the network brought meanwhile, so the submits and outcomes that
   * arrived together share one transaction (a store call runs without
   * yielding to I/O).
   */
  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = this.#spacing().then(() => this.#flush());
  }

  /**
   * Waits until the next commit may start: the end of this turn of the event
   * loop and, while many runs are active, BUSY_COMMIT_SPACING_MS after the
   * previous commit began. Under load, commits back to back would each carry
   * the few steps that came in during the last one and pay a commit's fixed
   * cost for each; spaced, each carries more. A scheduler with few runs
   * commits at once, so a lone run is not slowed down.
   */
  #spacing(): Promise<void> {
    const waitMs = this.#nextCommitAt() - performance.now();
    return new Promise<void>((resolve) => (waitMs > 0 ? setTimeout(resolve, waitMs) : setImmediate(resolve)));
  }

  #nextCommitAt(): number {
    return this.#active.size >= BUSY_ACTIVE_RUNS ? this.#lastCommitAt + BUSY_COMMIT_SPACING_MS : 0;
  }

  async #flush(): Promise<void> {
    try {
      await this.#commitWaiting();
    } finally {
      // Cleared in the same turn as the last check of #ops: a step queued by
      // a continuation of this commit's callers (they run after this turn)
      // then starts the next commit instead of waiting for one that has ended.
      this.#flushing = undefined;
      if (this.#ops.length > 0) this.#scheduleFlush();
    }
  }

  async #commitWaiting(): Promise<void> {
    while (this.#ops.length > 0) {
      if (performance.now() < this.#nextCommitAt()) await this.#spacing();
      this.#lastCommitAt = performance.now();
      const batch = this.#ops.splice(0);
      const changes: ChangeSet = {};
      const after: (() => void)[] = [];
      const results = batch.map((op) => {
        try {
          return { ok: true as const, value: op.step(changes, after) };
        } catch (err) {
          return { ok: false as const, err };
        }
      });
      // The step's time: what ends in it is stored with it, and its events carry it.
      const atMs = Date.now();
      try {
        if (Object.values(changes).some((list) => (list as unknown[]).length > 0)) await this.options.runs.apply(changes, atMs);
      } catch (err) {
        this.#pendingEvents.length = 0;
        for (const op of batch) op.reject(err);
        if (isFencedError(err)) {
          // A peer took this replica's runs: they are its to advance now.
          this.options.logger.warn({ steps: batch.length, runs: this.#active.size }, 'a peer scheduler took over the runs of this one; forgetting them');
          this.forgetAll();
          this.options.onFenced?.();
          continue;
        }
        // The in-memory state already holds these steps' changes: drop it and
        // resume from the store, as after a restart (stages run at least once).
        this.options.logger.error({ err, steps: batch.length }, 'a scheduler commit failed; resuming from the store');
        this.#resync();
        continue;
      }
      for (const fn of after) {
        try {
          fn();
        } catch (err) {
          this.options.logger.error({ err }, 'a step failed after its commit');
        }
      }
      // Events go out only once what they announce is durable, with the time of
      // the step that made it happen (an attempt's finished_at is the same
      // time), not the time the bus appends them after the publisher's batching.
      if (this.#pendingEvents.length > 0) {
        const time = new Date(atMs);
        const events = this.#pendingEvents.splice(0);
        for (const event of events) event.time ??= time;
        this.options.publisher?.publish(...events);
      }
      results.forEach((r, i) => (r.ok ? batch[i]!.resolve(r.value) : batch[i]!.reject(r.err)));
    }
  }

  /** Resolves the pipeline a submit request names or carries. */
  async resolvePipeline(request: SubmitRunRequest): Promise<Pipeline> {
    if (request.pipelineRef !== undefined) {
      const [name, version = ''] = request.pipelineRef.split('@');
      if (!name) throw new InvalidArgumentError('expected "name" or "name@version"', 'pipeline_ref');
      return this.options.runs.getPipeline(name, version);
    }
    if (request.document !== undefined || request.pipeline) return readPipelineOrThrow(request);
    throw new InvalidArgumentError('one of pipeline_ref, pipeline or document is required', 'target');
  }

  /**
   * Asks compliance to validate the pipeline. Structural errors are bad input
   * (INVALID_ARGUMENT with the field path); a report below the policy's gate
   * without such errors is FAILED_PRECONDITION.
   */
  async admit(pipeline: Pipeline): Promise<Report> {
    let problems = documentProblems.get(pipeline);
    if (!problems) documentProblems.set(pipeline, (problems = [...checkExpressions(pipeline), ...matrixProblems(pipeline)]));
    if (problems.length > 0) throw problemsToError(problems);
    const report = await this.options.validate(pipeline);
    const refusal = admissionError(report);
    if (refusal) throw refusal;
    return report;
  }

  /**
   * Registers a pipeline version after admission. The version as stored
   * (with its version number) is what its runs are admitted with, so it is
   * scored here too: compliance remembers the report, and the first run does
   * not pay for scoring a large pipeline.
   */
  async register(pipeline: Pipeline): Promise<Pipeline> {
    await this.admit(pipeline);
    const stored = await this.options.runs.registerPipeline(pipeline);
    // Only to have the report ready: the pipeline was admitted above, and a run admits it again anyway.
    await this.options.validate(stored).catch(() => undefined);
    return stored;
  }

  /**
   * Starts a run and returns it at once, as it stands after its first step
   * (the run already started for a repeated idempotency key).
   */
  async submit(request: SubmitRunRequest): Promise<Run> {
    const started = await this.#start(request);
    return started.firstStep ? newRunAsStored(started.firstStep) : this.getRun(started.runId);
  }

  /** Starts a run like submit() and returns only its id, for callers that do not answer with the run (RunAndWait, triggers). */
  async start(request: SubmitRunRequest): Promise<string> {
    return (await this.#start(request)).runId;
  }

  /** Starts a run; `firstStep` is its own first step, absent when a repeated idempotency key named a run already started. */
  async #start(request: SubmitRunRequest): Promise<{ runId: string; firstStep?: ChangeSet }> {
    if (request.idempotencyKey) {
      const existing = await this.options.runs.findRunByIdempotencyKey(request.idempotencyKey);
      if (existing) return { runId: existing };
    }
    const pipeline = await this.resolvePipeline(request);
    await this.admit(pipeline);
    for (const key of Object.keys(request.inputs)) {
      if (!(key in pipeline.inputs)) throw new InvalidArgumentError(`pipeline ${pipeline.name} declares no input "${key}" (declared: ${Object.keys(pipeline.inputs).join(', ') || 'none'})`, `inputs.${key}`);
    }
    let deadlineMs: number | undefined;
    if (request.deadline) {
      deadlineMs = parseDurationMs(request.deadline);
      if (deadlineMs === undefined) throw new InvalidArgumentError('expected a duration such as 30m', 'deadline');
    }
    const expanded = expandMatrix(pipeline);
    // A registered version run as registered (no matrix to expand) is stored by reference.
    const registered = request.pipelineRef !== undefined && expanded === pipeline;
    const run: ActiveRun = {
      runId: newId(),
      pipeline: { ...expanded, version: pipeline.version || 'inline' },
      inputs: { ...pipeline.inputs, ...request.inputs },
      priority: request.priority,
      status: 'RUNNING',
      stages: new Map(expanded.stages.map((stage) => [stage.id, { stage, status: 'PENDING', attemptNumber: 0, failures: 0, lost: 0, outputs: {} }])),
      inFlight: 0,
      window: dispatchWindow(expanded),
      held: [],
      heldNext: 0,
    };
    run.traceparent = beginRunTrace(run.runId, run.pipeline.name);
    return this.#commit((changes, after): { runId: string; firstStep?: ChangeSet } => {
      const key = request.idempotencyKey;
      if (key) {
        const existing = this.#keys.get(key);
        if (existing) return { runId: existing };
        this.#keys.set(key, run.runId);
        if (this.#keys.size > MAX_REMEMBERED_KEYS) this.#keys.delete(this.#keys.keys().next().value!);
      }
      const createdAtMs = Date.now();
      const deadlineAtMs = deadlineMs === undefined ? undefined : createdAtMs + deadlineMs;
      // The run's own first step, kept apart for submit()'s answer, then joined to the commit.
      const own: ChangeSet = {
        newRuns: [{ runId: run.runId, pipeline: run.pipeline, registered, state: 'RUNNING', inputs: run.inputs, labels: request.labels, priority: run.priority, idempotencyKey: key, deadlineAtMs, traceparent: run.traceparent, createdAtMs }],
      };
      const tasks = this.#advance(run, own);
      for (const [kind, list] of Object.entries(own) as [keyof ChangeSet, unknown[]][]) ((changes[kind] ??= []) as unknown[]).push(...list);
      after.push(() => {
        this.#activate(run, deadlineAtMs);
        this.#publish(withTraceparent(lifecycleEvent('run.submitted', SOURCE, `run/${run.runId}`, { run_id: run.runId, pipeline: run.pipeline.name }, { version: run.pipeline.version, stages: run.stages.size }), run.traceparent ?? ''));
        this.#afterCommit(run, tasks);
      });
      return { runId: run.runId, firstStep: own };
    });
  }

  /** Makes the run active; with a deadline (ms since the epoch), fails it when the deadline passes. */
  #activate(run: ActiveRun, deadlineAtMs: number | undefined): void {
    if (TERMINAL_RUN_STATES.has(run.status)) return;
    this.#active.set(run.runId, run);
    if (deadlineAtMs !== undefined) {
      const reason = `run deadline ${new Date(deadlineAtMs).toISOString()} exceeded`;
      run.deadlineTimer = setTimeout(() => void this.#end(run.runId, 'FAILED', reason).catch(() => undefined), Math.max(0, deadlineAtMs - Date.now()));
      run.deadlineTimer.unref();
    }
  }

  /**
   * Starts and skips what the DAG allows now; records the writes and returns
   * the tasks to send. `ended` names the stages that became terminal since the
   * run's last step: only their dependents can start now, so a step of a
   * 5,000-stage run looks at a few stages, not all of them. Without it every
   * stage is considered (a new or resumed run).
   */
  #advance(run: ActiveRun, changes: ChangeSet, ended?: readonly string[]): Task[] {
    const states = { get: (id: string) => run.stages.get(id)?.status };
    let from: DagCandidates | undefined;
    if (ended) {
      const dependents = (run.dependents ??= dependentsOf(run.pipeline.stages));
      from = { candidates: ended.flatMap((id) => dependents.get(id) ?? []), dependents };
    }
    const step = nextStep(run.pipeline.stages, states, from);
    const tasks: Task[] = [];
    for (const id of step.skip) {
      run.stages.get(id)!.status = 'SKIPPED';
      (changes.stages ??= []).push({ runId: run.runId, stageId: id, state: 'SKIPPED' });
      this.#publish(this.#stageEvent('stage.skipped', run, id, {}));
    }
    // Stages held back earlier start first, in the order they became free.
    while (run.heldNext < run.held.length && run.inFlight < run.window) tasks.push(this.#startStage(run, run.held[run.heldNext++]!, changes));
    if (run.heldNext === run.held.length) run.held.length = run.heldNext = 0;
    for (const id of step.start) {
      const record = run.stages.get(id)!;
      if (run.inFlight < run.window) tasks.push(this.#startStage(run, record, changes));
      else run.held.push(record);
    }
    const status = runStatus(statusesOf(run));
    if (status !== 'RUNNING' && run.status === 'RUNNING') {
      run.status = status;
      (changes.runs ??= []).push({ runId: run.runId, state: status, reason: status === 'FAILED' ? failureReason(run) : '' });
    }
    return tasks;
  }

  /** Starts a stage with a new attempt and counts it in the run's window: a PENDING one, or one a resumed run had in flight. */
  #startStage(run: ActiveRun, record: StageRecord, changes: ChangeSet): Task {
    run.inFlight++;
    return this.#newAttempt(run, record, changes);
  }

  #newAttempt(run: ActiveRun, record: StageRecord, changes: ChangeSet): Task {
    const { stage } = record;
    record.status = 'QUEUED';
    record.attemptNumber++;
    record.attemptId = newId();
    record.attemptStartedAtMs = Date.now();
    (changes.stages ??= []).push({ runId: run.runId, stageId: stage.id, state: 'QUEUED' });
    (changes.newAttempts ??= []).push({ attemptId: record.attemptId, runId: run.runId, stageId: stage.id, number: record.attemptNumber, state: 'QUEUED', startedAtMs: record.attemptStartedAtMs });
    record.trace = startStageSpan(run.traceparent, { runId: run.runId, stageId: stage.id, attempt: record.attemptNumber, framework: stage.framework, pipelineName: run.pipeline.name });
    record.traceparent = record.trace?.traceparent;
    // A view, not a copy: building a map of every stage per task made wide runs quadratic.
    const outputs = { get: (id: string) => run.stages.get(id)?.outputs };
    const timeout = stage.timeout || run.pipeline.defaults?.timeout || '';
    return {
      attemptId: record.attemptId,
      runId: run.runId,
      stageId: stage.id,
      framework: stage.framework,
      run: resolveExpressions(stage.run ?? {}, { inputs: run.inputs, outputs }),
      attempt: record.attemptNumber,
      timeoutMs: timeout ? (parseDurationMs(timeout) ?? 0) : 0,
      pipelineName: run.pipeline.name,
      priority: run.priority,
      traceparent: record.traceparent ?? '',
      outputs: stage.outputs,
      artifacts: stage.artifacts,
      pipelineMaxConcurrency: run.pipeline.concurrency?.max ?? 0,
      frameworkMaxConcurrency: run.pipeline.concurrency?.frameworks[stage.framework] ?? 0,
      schedulerId: this.options.instanceId ?? '',
    };
  }

  /** After a step committed: send its tasks, notify watchers, forget finished runs. */
  #afterCommit(run: ActiveRun, tasks: Task[]): void {
    for (const task of tasks) this.#publish(this.#stageEvent('stage.ready', run, task.stageId, { attempt: task.attempt, attempt_id: task.attemptId }));
    if (tasks.length) {
      try {
        this.#tasks.add(...tasks);
      } catch (err) {
        // The coordinator has been unreachable for long: the stages stay QUEUED and run after a resync.
        this.options.logger.error({ err, runId: run.runId }, 'cannot queue tasks for the coordinator');
      }
    }
    if (TERMINAL_RUN_STATES.has(run.status)) this.#finish(run);
    this.#notify(run.runId);
  }

  #finish(run: ActiveRun): void {
    clearTimeout(run.deadlineTimer);
    for (const record of run.stages.values()) clearTimeout(record.retryTimer);
    this.#active.delete(run.runId);
    this.#publish(withTraceparent(lifecycleEvent('run.finished', SOURCE, `run/${run.runId}`, { run_id: run.runId, pipeline: run.pipeline.name }, { state: run.status }), run.traceparent ?? ''));
  }

  #stageEvent(type: string, run: ActiveRun, stageId: string, data: Record<string, unknown>) {
    const record = run.stages.get(stageId);
    const framework = record?.stage.framework ?? '';
    const event = lifecycleEvent(type, SOURCE, `run/${run.runId}/stage/${stageId}`, { run_id: run.runId, pipeline: run.pipeline.name, stage_id: stageId, framework }, data);
    // stage.ready goes untraced: the stage's span already covers it, and a span per ready event would double the bus's spans.
    return type === 'stage.ready' ? event : withTraceparent(event, record?.traceparent || run.traceparent || '');
  }

  /** Queues events for publication after the current commit (see #flush). */
  #publish(...events: Parameters<EventPublisher['publish']>): void {
    this.#pendingEvents.push(...events);
  }

  /** Forgets every active run and loads them again from the store. */
  #resync(): void {
    this.forgetAll();
    this.recover().catch((err) => this.options.logger.error({ err }, 'resuming runs from the store failed'));
  }

  /**
   * Drops every active run from memory (a failed commit, or a peer took this
   * replica's runs: see RunOwnership.renew); callers waiting on one read it
   * from the store from now on.
   */
  forgetAll(): void {
    const forgotten = [...this.#active.keys()];
    for (const run of this.#active.values()) {
      clearTimeout(run.deadlineTimer);
      for (const record of run.stages.values()) clearTimeout(record.retryTimer);
    }
    this.#active.clear();
    this.#pendingRetries.length = 0;
    for (const runId of forgotten) this.#notify(runId);
  }


  /**
   * Applies a batch of outcomes in one step. An outcome counts only if its
   * attempt still holds the stage; others are ignored and counted.
   */
  applyOutcomes(outcomes: readonly Outcome[]): Promise<{ applied: number; ignored: number }> {
    return this.#commit((changes, after) => {
      /** Each run an outcome counted for, with the stages that ended. */
      const touched = new Map<ActiveRun, string[]>();
      let applied = 0;
      for (const outcome of outcomes) {
        const run = this.#active.get(outcome.runId);
        const record = run?.stages.get(outcome.stageId);
        if (!run || !record || record.attemptId !== outcome.attemptId) {
          this.ignoredOutcomes++;
          continue;
        }
        applied++;
        this.#applyOne(run, record, outcome, changes);
        let ended = touched.get(run);
        if (!ended) touched.set(run, (ended = []));
        if (isTerminal(record.status)) {
          ended.push(record.stage.id);
          run.inFlight--;
        }
      }
      const tasksByRun = new Map<ActiveRun, Task[]>();
      for (const { run, record } of this.#pendingRetries.splice(0)) {
        tasksByRun.set(run, [...(tasksByRun.get(run) ?? []), this.#newAttempt(run, record, changes)]);
      }
      for (const [run, ended] of touched) tasksByRun.set(run, [...(tasksByRun.get(run) ?? []), ...this.#advance(run, changes, ended)]);
      after.push(() => {
        for (const [run, tasks] of tasksByRun) this.#afterCommit(run, tasks);
      });
      return { applied, ignored: outcomes.length - applied };
    });
  }

  #applyOne(run: ActiveRun, record: StageRecord, outcome: Outcome, changes: ChangeSet): void {
    const state = outcomeState(outcome.status);
    record.traceparent = finishStageSpan(record.trace, outcome, state) || record.traceparent;
    record.trace = undefined;
    this.#endAttempt(run, record, changes, { state, nodeId: outcome.nodeId, evidence: outcome.evidence });
    const data = { attempt: record.attemptNumber, node_id: outcome.nodeId, exit_code: outcome.evidence?.exitCode ?? 0, duration_ms: outcome.evidence?.durationMs ?? 0 };
    if (state === 'SUCCEEDED') {
      record.status = 'SUCCEEDED';
      record.outputs = outcome.outputs;
      (changes.stages ??= []).push({ runId: run.runId, stageId: record.stage.id, state: 'SUCCEEDED', outputs: outcome.outputs });
      this.#publish(this.#stageEvent('stage.succeeded', run, record.stage.id, data));
      return;
    }
    if (outcome.status === OutcomeStatus.OUTCOME_STATUS_LOST && ++record.lost <= MAX_LOST_ATTEMPTS) {
      // The worker or its lease was lost: run the stage again at once, elsewhere if need be.
      this.#publish(this.#stageEvent('stage.retrying', run, record.stage.id, { ...data, delay_ms: 0, error: outcome.evidence?.error ?? '' }));
      this.#pendingRetries.push({ run, record });
      return;
    }
    const retry = record.stage.retry ?? run.pipeline.defaults?.retry;
    const maxAttempts = Math.max(1, retry?.maxAttempts ?? 1);
    if (state === 'FAILED') record.failures++;
    if (state === 'FAILED' && record.failures < maxAttempts) {
      const delayMs = retryDelayMs(
        record.failures,
        parseDurationMs(retry?.backoff ?? '') ?? DEFAULT_BACKOFF_MS,
        parseDurationMs(retry?.maxBackoff ?? '') ?? DEFAULT_MAX_BACKOFF_MS,
      );
      this.#publish(this.#stageEvent('stage.retrying', run, record.stage.id, { ...data, delay_ms: delayMs, error: outcome.evidence?.error ?? '' }));
      record.retryTimer = setTimeout(() => void this.#retry(run.runId, record.stage.id).catch((err) => this.options.logger.error({ err }, 'retry failed')), delayMs);
      return;
    }
    record.status = state;
    (changes.stages ??= []).push({ runId: run.runId, stageId: record.stage.id, state });
    this.#publish(this.#stageEvent(state === 'CANCELLED' ? 'stage.cancelled' : 'stage.failed', run, record.stage.id, { ...data, error: outcome.evidence?.error ?? '' }));
  }

  /** Records how the stage's attempt in flight ended; the attempt no longer holds the stage. */
  #endAttempt(run: ActiveRun, record: StageRecord, changes: ChangeSet, end: Pick<AttemptChange, 'state' | 'nodeId' | 'evidence'>): void {
    (changes.finishedAttempts ??= []).push({ attemptId: record.attemptId!, runId: run.runId, stageId: record.stage.id, number: record.attemptNumber, startedAtMs: record.attemptStartedAtMs, ...end });
    record.attemptId = undefined;
  }

  #retry(runId: string, stageId: string): Promise<void> {
    return this.#commit((changes, after) => {
      const run = this.#active.get(runId);
      const record = run?.stages.get(stageId);
      if (!run || !record || record.status !== 'QUEUED' || record.attemptId || this.#stopped) return;
      const task = this.#newAttempt(run, record, changes);
      after.push(() => this.#afterCommit(run, [task]));
    });
  }

  /** Cancels a run: its queued and running stages stop. A finished run is returned unchanged. */
  async cancel(runId: string, reason: string): Promise<void> {
    await this.options.runs.getRun(runId); // NotFoundError for an unknown id
    if (!this.#active.has(runId) && this.options.forwardCancel && (await this.options.forwardCancel(runId, reason))) return;
    await this.#end(runId, 'CANCELLED', reason || 'cancelled by request');
  }

  #end(runId: string, state: 'CANCELLED' | 'FAILED', reason: string): Promise<void> {
    return this.#commit((changes, after) => {
      const run = this.#active.get(runId);
      if (!run) return;
      (changes.runs ??= []).push({ runId, state, reason });
      for (const record of run.stages.values()) {
        if (isTerminal(record.status)) continue;
        if (record.attemptId) this.#endAttempt(run, record, changes, { state: 'CANCELLED' });
        record.status = 'CANCELLED';
        (changes.stages ??= []).push({ runId, stageId: record.stage.id, state: 'CANCELLED' });
      }
      run.status = state;
      after.push(() => {
        this.#afterCommit(run, []);
        this.options.cancelTasks([runId], reason).catch((err) => this.options.logger.warn({ err, runId }, 'could not reach the coordinator to stop tasks'));
      });
    });
  }

  /**
   * Resumes the runs a previous process left unfinished: attempts it had in
   * flight are closed as interrupted and their stages dispatched again (not
   * counted against retries: stages run at least once).
   */
  async recover(): Promise<number> {
    const ids = this.options.claimRuns ? await this.options.claimRuns({ includeOwn: true }) : await this.options.runs.unfinishedRunIds();
    await this.#resume(ids.filter((id) => !this.#active.has(id)));
    return ids.length;
  }

  /**
   * Takes over the runs whose scheduler replica is gone (see claimRuns) and
   * resumes them as recover() does. Returns how many it took.
   */
  async adoptOrphans(): Promise<number> {
    if (!this.options.claimRuns || this.#stopped) return 0;
    const ids = (await this.options.claimRuns({ includeOwn: false })).filter((id) => !this.#active.has(id));
    await this.#resume(ids);
    return ids.length;
  }

  async #resume(ids: readonly string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += RECOVER_BATCH) {
      const stored = await this.options.runs.loadRuns(ids.slice(i, i + RECOVER_BATCH), { adopt: true });
      await this.#commit((changes, after) => {
        for (const { run: wire, definition: pipeline, deadlineAtMs, traceparent } of stored) {
          const run: ActiveRun = { runId: wire.runId, pipeline, inputs: wire.inputs, priority: wire.priority, status: 'RUNNING', stages: new Map(), traceparent, inFlight: 0, window: dispatchWindow(pipeline), held: [], heldNext: 0 };
          const stageRuns = new Map(wire.stages.map((s) => [s.stageId, s]));
          const tasks: Task[] = [];
          for (const stage of pipeline.stages) {
            const stageRun = stageRuns.get(stage.id);
            const status = stageRun ? (stateName(stageRun.state) as StageStatus) : 'PENDING';
            const record: StageRecord = {
              stage,
              status,
              attemptNumber: stageRun?.attempts.length ?? 0,
              failures: stageRun?.attempts.filter((a) => stateName(a.state) === 'FAILED' && !isLostEvidence(a.evidence)).length ?? 0,
              lost: stageRun?.attempts.filter((a) => isLostEvidence(a.evidence)).length ?? 0,
              outputs: stageRun?.outputs ?? {},
            };
            run.stages.set(stage.id, record);
            for (const attempt of stageRun?.attempts ?? []) {
              if (attempt.finishedAt) continue;
              (changes.finishedAttempts ??= []).push({ attemptId: attempt.attemptId, runId: run.runId, stageId: stage.id, number: attempt.number, startedAtMs: attempt.startedAt?.getTime(), state: 'CANCELLED', evidence: interrupted('the mesh restarted while the attempt ran') });
            }
            if (status === 'QUEUED' || status === 'RUNNING') tasks.push(this.#startStage(run, record, changes));
          }
          tasks.push(...this.#advance(run, changes));
          after.push(() => {
            this.#activate(run, deadlineAtMs);
            this.#afterCommit(run, tasks);
          });
        }
      });
    }
  }

  /** Calls `listener` after every committed change of the run; returns the unsubscribe function. */
  onRunChange(runId: string, listener: () => void): () => void {
    let set = this.#listeners.get(runId);
    if (!set) this.#listeners.set(runId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(runId);
    };
  }

  #notify(runId: string): void {
    for (const listener of this.#listeners.get(runId) ?? []) listener();
  }

  /** True while this scheduler is advancing the run (it has not finished). */
  isActive(runId: string): boolean {
    return this.#active.has(runId);
  }

  /** The run as it stands now; without its stages when `basic`. */
  getRun(runId: string, { basic = false } = {}): Promise<Run> {
    return this.options.runs.getRun(runId, { live: this.#active.has(runId), basic });
  }

  /**
   * Stops retries and timers, records the attempts still in flight as
   * interrupted (their stages run again when the runs resume on the next
   * start) and sends tasks still waiting.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    while (this.#flushing) await this.#flushing;
    for (const run of this.#active.values()) {
      clearTimeout(run.deadlineTimer);
      for (const record of run.stages.values()) clearTimeout(record.retryTimer);
    }
    await this.#commit((changes) => {
      for (const run of this.#active.values()) {
        for (const record of run.stages.values()) {
          if (record.attemptId) this.#endAttempt(run, record, changes, { state: 'CANCELLED', evidence: interrupted('the mesh stopped while the attempt ran') });
        }
      }
    }).catch((err: unknown) => this.options.logger.warn({ err }, 'could not record the attempts in flight as interrupted; their stages run again anyway'));
    await this.#tasks.close();
    for (const set of this.#listeners.values()) for (const listener of set) listener();
  }
}

/** The states of a run's stages, read as runStatus asks for them (it stops at the first stage still open). */
function* statusesOf(run: ActiveRun): Iterable<StageStatus> {
  for (const record of run.stages.values()) yield record.status;
}

/** Why a failed run failed: the stages that failed. */
function failureReason(run: ActiveRun): string {
  const failed = [...run.stages.values()].filter((r) => r.status === 'FAILED').map((r) => r.stage.id);
  return failed.length ? `stage${failed.length > 1 ? 's' : ''} ${failed.join(', ')} failed` : '';
}

/** The evidence of an attempt the mesh's stop or restart cut short. */
function interrupted(why: string): Evidence {
  return Evidence.fromPartial({ exitCode: -1, error: `interrupted: ${why}` });
}

/** Attempts lost with their worker carry an error starting with "lost:" (see the coordinator). */
function isLostEvidence(evidence: Evidence | undefined): boolean {
  return evidence?.error.startsWith('lost:') ?? false;
}

function stateName(state: StageState): string {
  return (StageState[state] ?? '').replace('STAGE_STATE_', '');
}
