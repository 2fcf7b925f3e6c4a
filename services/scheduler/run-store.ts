import { AlreadyExistsError, NotFoundError } from '../common/errors.js';
import { RunState, StageState, type Attempt, type Evidence, type Pipeline, type Run, type StageRun } from '../common/proto.js';
import { sqlLiteral, type Store } from '../common/store.js';
import { isTerminal, type StageStatus } from '../common/dag.js';

/** Run states as stored (the wire enum without its prefix). */
export type RunStatus = 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

export const TERMINAL_RUN_STATES: ReadonlySet<RunStatus> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

/** A new run with its stages and first attempts, written in one transaction. */
export interface NewRun {
  runId: string;
  pipeline: Pipeline;
  state: RunStatus;
  inputs: Record<string, string>;
  labels: Record<string, string>;
  priority: number;
  idempotencyKey: string;
  /** When the run fails if it has not finished, in ms since the epoch. */
  deadlineAtMs?: number;
  /** W3C trace context of the run ('' or absent when it is not traced). */
  traceparent?: string;
  /** When the run was submitted, in ms since the epoch (so the answer to SubmitRun and the stored row agree). */
  createdAtMs: number;
  /** True when `pipeline` is a registered version exactly as registered: the stored run refers to it instead of copying it. */
  registered?: boolean;
}

/** A stored run with what the scheduler needs to resume it and the auditor to check it. */
export interface StoredRun {
  run: Run;
  /** The pipeline definition the run was started with (matrices expanded). */
  definition: Pipeline;
  /** When the run fails if it has not finished, in ms since the epoch. */
  deadlineAtMs?: number;
  /** W3C trace context of the run ('' when it is not traced). */
  traceparent: string;
}

export interface RunStoreOptions {
  /**
   * True when no other process writes to the store (the embedded PGlite
   * store): the latest version of each pipeline, and the runs this process
   * created or resumed (while active, and the last 1,000 finished), are then
   * served from memory. Otherwise only the runs its scheduler is advancing
   * are (GetRun with `live`): the store does not hold their stages in flight.
   * Exact versions are immutable and always cached. @default false
   */
  exclusive?: boolean;
  /**
   * The scheduler replica writing (the distributed profile, see
   * RunOwnership): each step commits only while the replica still owns its
   * runs, and the runs it creates are its own.
   */
  owner?: string;
}

export interface StageChange {
  runId: string;
  stageId: string;
  state: StageStatus;
  outputs?: Record<string, string>;
}

export interface AttemptChange {
  attemptId: string;
  runId: string;
  stageId: string;
  number: number;
  state: StageStatus;
  nodeId?: string;
  evidence?: Evidence;
  /** When the attempt was created, in ms since the epoch (an ended attempt is stored with it). @default the commit time */
  startedAtMs?: number;
}

export interface RunChange {
  runId: string;
  state: RunStatus;
  reason?: string;
}

/**
 * Every change of one scheduler step; applied in a single transaction with
 * multi-row statements. The store keeps the ended stages and attempts
 * (RunStore.apply); the mirror keeps all of it.
 */
export interface ChangeSet {
  newRuns?: NewRun[];
  stages?: StageChange[];
  /** Attempts started: in memory only. */
  newAttempts?: AttemptChange[];
  /** Attempts ended: stored whole. */
  finishedAttempts?: AttemptChange[];
  runs?: RunChange[];
}

interface RunRow {
  run_id: string;
  deadline_at?: Date | null;
  traceparent?: string;
  pipeline_name: string;
  pipeline_version: string;
  definition: Pipeline;
  state: RunStatus;
  inputs: Record<string, string>;
  labels: Record<string, string>;
  priority: number;
  idempotency_key: string | null;
  reason: string;
  created_at: Date;
  /** created_at at full precision, in listings. */
  created_at_text?: string;
  finished_at: Date | null;
}

/** A run's row without its definition, as listings read it. */
type RunSummaryRow = Omit<RunRow, 'definition'>;

/** The columns of a RunSummaryRow. */
const SUMMARY_COLUMNS = 'run_id, pipeline_name, pipeline_version, state, inputs, labels, priority, idempotency_key, reason, created_at, finished_at, deadline_at, traceparent';

interface AttemptRow {
  attempt_id: string;
  stage_id: string;
  number: number;
  state: StageStatus;
  node_id: string;
  started_at: Date;
  finished_at: Date | null;
  evidence: Evidence | null;
}

/** An attempt as the store's JSON gives it back: its times as text. */
type StoredAttempt = Omit<AttemptRow, 'started_at' | 'finished_at'> & { started_at: string; finished_at: string | null };

const json = (value: unknown) => JSON.stringify(value);

/** Pipeline definitions kept in memory, by name@version and (exclusive stores) by name. */
const MAX_CACHED_PIPELINES = 10_000;

/**
 * Durable state of the scheduler: the pipeline registry and runs with their
 * stages and attempts. Each scheduler step is one transaction whose statements
 * each carry many rows (jsonb_to_recordset), never one round trip per stage.
 */
export class RunStore {
  /** Registered definitions by `name@version`: a version never changes once stored. */
  readonly #versions = new Map<string, Pipeline>();
  /** The latest definition by name; only filled when this process is the store's only writer. */
  readonly #latest = new Map<string, Pipeline>();

  /** Runs as this process's steps changed them (GetRun answers from it, see RunStoreOptions.exclusive). */
  readonly #mirror = new RunMirror();

  constructor(
    private readonly store: Store,
    private readonly options: RunStoreOptions = {},
  ) {
  }

  #remember(pipeline: Pipeline, latest: boolean): Pipeline {
    if (this.#versions.size >= MAX_CACHED_PIPELINES) this.#versions.clear();
    this.#versions.set(`${pipeline.name}@${pipeline.version}`, pipeline);
    if (latest && this.options.exclusive) {
      if (this.#latest.size >= MAX_CACHED_PIPELINES) this.#latest.clear();
      this.#latest.set(pipeline.name, pipeline);
    }
    return pipeline;
  }

  /**
   * Registers a pipeline version. An empty version gets the next integer.
   * Registering the same definition again returns it; a different definition
   * under an existing version is refused.
   * @throws AlreadyExistsError when the version exists with another definition.
   */
  async registerPipeline(pipeline: Pipeline): Promise<Pipeline> {
    const { stored, latest } = await this.store.transaction(async (tx) => {
      const [last] = await tx.query<{ seq: number; definition: Pipeline; same: boolean }>(
        'SELECT seq, definition, definition - \'version\' = $2::jsonb - \'version\' AS same FROM pipelines WHERE name = $1 ORDER BY seq DESC LIMIT 1',
        [pipeline.name, json(pipeline)],
      );
      // Registering the latest definition again without a version is a no-op.
      if (!pipeline.version && last?.same) return { stored: last.definition, latest: true };
      const seq = (last?.seq ?? 0) + 1;
      const version = pipeline.version || String(seq);
      const stored = { ...pipeline, version };
      // jsonb equality compares content, not key order.
      const [existing] = await tx.query<{ definition: Pipeline; same: boolean }>(
        'SELECT definition, definition = $3::jsonb AS same FROM pipelines WHERE name = $1 AND version = $2',
        [pipeline.name, version, json(stored)],
      );
      if (existing) {
        if (existing.same) return { stored: existing.definition, latest: false };
        throw new AlreadyExistsError(`pipeline ${pipeline.name}@${version} already exists with a different definition; register a new version`);
      }
      await tx.query('INSERT INTO pipelines (name, version, seq, definition, triggers) VALUES ($1, $2, $3, $4, $5)', [pipeline.name, version, seq, json(stored), json(stored.triggers)]);
      return { stored, latest: true };
    });
    return this.#remember(stored, latest);
  }

  /** Returns a pipeline version (the latest when `version` is empty). @throws NotFoundError */
  async getPipeline(name: string, version = ''): Promise<Pipeline> {
    const cached = version ? this.#versions.get(`${name}@${version}`) : this.#latest.get(name);
    if (cached) return cached;
    const rows = version
      ? await this.store.query<{ definition: Pipeline }>('SELECT definition FROM pipelines WHERE name = $1 AND version = $2', [name, version])
      : await this.store.query<{ definition: Pipeline }>('SELECT definition FROM pipelines WHERE name = $1 ORDER BY seq DESC LIMIT 1', [name]);
    if (!rows[0]) throw new NotFoundError('pipeline', version ? `${name}@${version}` : name);
    return this.#remember(rows[0].definition, !version);
  }

  /** The latest version of every pipeline, by name, from `after` on. */
  async listPipelines(limit: number, after = ''): Promise<Pipeline[]> {
    const rows = await this.store.query<{ definition: Pipeline }>(
      `SELECT DISTINCT ON (name) definition FROM pipelines WHERE name > $1 ORDER BY name, seq DESC LIMIT $2`,
      [after, limit],
    );
    return rows.map((r) => r.definition);
  }

  /** The latest version of every pipeline whose latest version declares triggers, by name. */
  async triggeredPipelines(): Promise<Pipeline[]> {
    // The definitions of pipelines without triggers are never read (only their small triggers column).
    const rows = await this.store.query<{ definition: Pipeline }>(
      `SELECT definition FROM (SELECT DISTINCT ON (name) name, triggers, definition FROM pipelines ORDER BY name, seq DESC) latest
        WHERE triggers <> '[]'::jsonb ORDER BY name`,
    );
    return rows.map((r) => r.definition);
  }

  async findRunByIdempotencyKey(key: string): Promise<string | undefined> {
    const [row] = await this.store.query<{ run_id: string }>('SELECT run_id FROM runs WHERE idempotency_key = $1', [key]);
    return row?.run_id;
  }

  /**
   * Applies one scheduler step atomically, in one round trip: each kind of
   * row is one statement over all its rows (see stagemesh_apply_step). What
   * is stored is what recovery and the readers of a run need: a new run, the
   * stages that ended (with their outputs and, whole, the attempt they ended
   * with), the other attempts that ended (whole), the runs that changed
   * state. Stages queued and attempts started are not written: they are in
   * the scheduler's memory and in the mirror GetRun
   * answers from. After a crash such a stage runs again (at least once); a
   * graceful stop records its attempts in flight as interrupted.
   */
  async apply(changes: ChangeSet, atMs = Date.now()): Promise<void> {
    const step: Record<string, unknown[]> = {};
    // `atMs` is the step's own time for what finishes in it (the scheduler's clock, as for every other time stored).
    const at = new Date(atMs).toISOString();
    if (changes.newRuns?.length) step.new_runs = changes.newRuns.map((r) => ({ ...newRunRow(r), definition: r.registered ? null : r.pipeline }));
    // One row per stage and attempt: an upsert may not touch a row twice in one statement.
    const endedStages = new Map<string, StageChange>();
    for (const s of changes.stages ?? []) if (isTerminal(s.state)) endedStages.set(`${s.runId}\u0000${s.stageId}`, s);
    // The attempt a stage ends with goes into the stage's row (final_attempt, migration 11); the others into attempts.
    const finalAttempts = new Map<string, AttemptChange>();
    const otherAttempts: AttemptChange[] = [];
    for (const a of new Map((changes.finishedAttempts ?? []).map((a) => [a.attemptId, a])).values()) {
      const key = `${a.runId}\u0000${a.stageId}`;
      const earlier = finalAttempts.get(key);
      if (!endedStages.has(key) || (earlier && earlier.number > a.number)) otherAttempts.push(a);
      else {
        if (earlier) otherAttempts.push(earlier);
        finalAttempts.set(key, a);
      }
    }
    const attemptRow = (a: AttemptChange) => ({
      attempt_id: a.attemptId,
      number: a.number,
      state: a.state,
      node_id: a.nodeId ?? '',
      started_at: a.startedAtMs === undefined ? at : new Date(a.startedAtMs).toISOString(),
      finished_at: at,
      evidence: a.evidence ?? null,
    });
    if (endedStages.size) {
      step.ended_stages = [...endedStages].map(([key, s]) => {
        const final = finalAttempts.get(key);
        return { run_id: s.runId, stage_id: s.stageId, state: s.state, outputs: s.outputs ?? null, final_attempt: final ? attemptRow(final) : null };
      });
    }
    if (otherAttempts.length) step.ended_attempts = otherAttempts.map((a) => ({ ...attemptRow(a), run_id: a.runId, stage_id: a.stageId }));
    if (changes.runs?.length) step.runs = changes.runs.map((r) => ({ run_id: r.runId, state: r.state, reason: r.reason ?? null, finished_at: at }));
    // A step of stages and attempts starting only changes memory.
    if (Object.keys(step).length > 0) {
      const statements = [`SELECT stagemesh_apply_step(${sqlLiteral(json(step))}::jsonb)`];
      // One round trip, one transaction: the step commits only while this replica still owns its runs.
      if (this.options.owner) statements.unshift(`SELECT stagemesh_fence(${sqlLiteral(this.options.owner)})`);
      await this.store.script(statements);
    }
    this.#mirror.apply(changes, atMs);
  }

  /**
   * One run with its stages and attempts (without them when `basic`, as
   * ListRuns lists it): from memory when this process created or resumed it
   * and either the store is exclusive or the run is `live` (its scheduler is
   * advancing it). @throws NotFoundError
   */
  async getRun(runId: string, { live = false, basic = false } = {}): Promise<Run> {
    const fromMirror = this.options.exclusive || live;
    const mirrored = fromMirror ? (basic ? this.#mirror.summary(runId) : this.#mirror.run(runId)) : undefined;
    if (mirrored) return mirrored;
    if (basic) {
      // The run's row alone: its stages and attempts are not read at all.
      const [row] = await this.store.query<RunSummaryRow>(`SELECT ${SUMMARY_COLUMNS} FROM runs WHERE run_id = $1`, [runId]);
      if (!row) throw new NotFoundError('run', runId);
      return runSummary(row);
    }
    const [found] = await this.loadRuns([runId]);
    if (!found) throw new NotFoundError('run', runId);
    return found.run;
  }

  /**
   * Loads runs with their stages, attempts and definitions: from the mirror
   * when the store is exclusive and the mirror holds them (as GetRun does; the
   * auditor reads each run just after it finished), else in one statement for
   * any number of runs. Unknown ids are left out. With `adopt` (a
   * scheduler resuming them) the runs join the mirror, so GetRun shows their
   * stages in flight as it does for runs this process created.
   */
  async loadRuns(runIds: readonly string[], { adopt = false } = {}): Promise<StoredRun[]> {
    if (runIds.length === 0) return [];
    const ids = [...new Set(runIds)];
    const remembered = new Map<string, StoredRun>();
    if (this.options.exclusive) {
      for (const id of ids) {
        const run = this.#mirror.stored(id);
        if (run) remembered.set(id, run);
      }
    }
    const missing = ids.filter((id) => !remembered.has(id));
    // One statement: each round trip into the store costs more than the rows it reads.
    const rows = missing.length === 0 ? [] : await this.store.query<RunSummaryRow & { definition: Pipeline | null; registered_definition: Pipeline | null; stage_rows: (StageRow & { final_attempt: Omit<StoredAttempt, 'stage_id'> | null })[]; attempt_rows: StoredAttempt[] }>(
      `SELECT r.*,
              (SELECT p.definition FROM pipelines p WHERE r.definition IS NULL AND p.name = r.pipeline_name AND p.version = r.pipeline_version) AS registered_definition,
              coalesce((SELECT jsonb_agg(jsonb_build_object('stage_id', s.stage_id, 'state', s.state, 'outputs', s.outputs, 'final_attempt', s.final_attempt))
                          FROM stage_runs s WHERE s.run_id = r.run_id), '[]') AS stage_rows,
              coalesce((SELECT jsonb_agg(jsonb_build_object('attempt_id', a.attempt_id, 'stage_id', a.stage_id, 'number', a.number, 'state', a.state,
                                                            'node_id', a.node_id, 'started_at', a.started_at, 'finished_at', a.finished_at, 'evidence', a.evidence)
                                         ORDER BY a.stage_id, a.number)
                          FROM attempts a WHERE a.run_id = r.run_id), '[]') AS attempt_rows
         FROM runs r WHERE r.run_id = ANY($1::text[])`,
      [missing],
    );
    const byId = new Map(rows.map((row) => [row.run_id, row]));
    return ids.flatMap((id) => {
      const known = remembered.get(id);
      if (known) return [known];
      const found = byId.get(id);
      if (!found) return [];
      const { registered_definition, ...stored } = found;
      // A run of a registered version stores no copy of its definition (migration 10).
      const row = { ...stored, definition: stored.definition ?? registered_definition! };
      // A stage's own attempts, then the one it ended with (the latest); an older version may have left that one's row open in attempts too.
      const attempts = new Map(row.attempt_rows.map((a) => [a.attempt_id, a]));
      const stages = row.stage_rows.map(({ final_attempt, ...stage }) => {
        if (final_attempt) attempts.set(final_attempt.attempt_id, { ...final_attempt, stage_id: stage.stage_id });
        return stage;
      });
      const attemptRows = [...attempts.values()].map((a) => ({ ...a, started_at: new Date(a.started_at), finished_at: a.finished_at === null ? null : new Date(a.finished_at) }));
      if (adopt) this.#mirror.adopt(row, stages, attemptRows);
      return [storedRun(row, stages, attemptRows)];
    });
  }

  /** The pipeline each run ran, by run id, in one statement (unknown ids are left out). */
  async pipelinesOfRuns(runIds: readonly string[]): Promise<Map<string, Pipeline>> {
    if (runIds.length === 0) return new Map();
    const rows = await this.store.query<{ run_id: string; definition: Pipeline }>(
      `SELECT r.run_id, coalesce(r.definition, p.definition) AS definition
         FROM runs r LEFT JOIN pipelines p ON r.definition IS NULL AND p.name = r.pipeline_name AND p.version = r.pipeline_version
        WHERE r.run_id = ANY($1::text[])`,
      [[...new Set(runIds)]],
    );
    return new Map(rows.filter((r) => r.definition).map((r) => [r.run_id, r.definition]));
  }

  /** Runs newest first; `before` is the created_at/run_id cursor of the previous page. */
  async listRuns(options: { limit: number; before?: { createdAt: string; runId: string }; pipelineName?: string; state?: RunStatus }): Promise<RunSummaryRow[]> {
    const params: unknown[] = [options.limit];
    const where: string[] = [];
    if (options.before) {
      params.push(options.before.createdAt, options.before.runId);
      where.push(`(created_at, run_id) < ($${params.length - 1}::timestamptz, $${params.length})`);
    }
    if (options.pipelineName) where.push(`pipeline_name = $${params.push(options.pipelineName)}`);
    if (options.state) where.push(`state = $${params.push(options.state)}`);
    // created_at_text keeps the microseconds a Date would lose, for exact page cursors.
    return this.store.query<RunSummaryRow>(
      `SELECT ${SUMMARY_COLUMNS}, created_at::text AS created_at_text FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, run_id DESC LIMIT $1`,
      params,
    );
  }

  /** Ids of runs that have not finished (to resume after a restart). */
  async unfinishedRunIds(): Promise<string[]> {
    const rows = await this.store.query<{ run_id: string }>(`SELECT run_id FROM runs WHERE state IN ('PENDING', 'RUNNING') ORDER BY created_at`);
    return rows.map((r) => r.run_id);
  }
}

/**
 * A new run as the scheduler's mirror holds it once `changes` (its first
 * step: the run, its stage changes and first attempts, nothing of other runs)
 * are committed; SubmitRun answers with it without reading the store.
 */
export function newRunAsStored(changes: ChangeSet): Run {
  const run = changes.newRuns![0]!;
  const mirror = new RunMirror(1);
  mirror.apply(changes, run.createdAtMs);
  return mirror.run(run.runId)!;
}

/** The row a new run is stored as (its dates become ISO strings in the JSON stagemesh_apply_step reads). */
function newRunRow(r: NewRun): RunRow {
  return {
    run_id: r.runId,
    pipeline_name: r.pipeline.name,
    pipeline_version: r.pipeline.version,
    definition: r.pipeline,
    state: r.state,
    inputs: r.inputs,
    labels: r.labels,
    priority: r.priority,
    idempotency_key: r.idempotencyKey || null,
    reason: '',
    created_at: new Date(r.createdAtMs),
    finished_at: null,
    deadline_at: r.deadlineAtMs === undefined ? null : new Date(r.deadlineAtMs),
    traceparent: r.traceparent ?? '',
  };
}

/** Finished runs a RunMirror keeps, for a RunAndWait or GetRun that asks right after the end. */
const MIRRORED_FINISHED_RUNS = 1_000;

interface MirroredRun {
  row: RunRow;
  stages: Map<string, StageRow>;
  attempts: Map<string, AttemptRow>;
}

/**
 * The runs this process created or resumed, as its steps changed them: the
 * rows stagemesh_apply_step stores, with the same times (every time comes
 * from the scheduler), and the stages queued and attempts started, which
 * only memory holds. Active runs stay until they finish, then the last
 * MIRRORED_FINISHED_RUNS finished ones.
 */
export class RunMirror {
  readonly #runs = new Map<string, MirroredRun>();
  readonly #finished = new Set<string>();

  constructor(private readonly maxFinished = MIRRORED_FINISHED_RUNS) {}

  /** Applies a committed step; `atMs` is the time it gave what finished in it. */
  apply(changes: ChangeSet, atMs: number): void {
    for (const r of changes.newRuns ?? []) this.adopt(newRunRow(r), [], []);
    for (const c of changes.stages ?? []) {
      const stages = this.#runs.get(c.runId)?.stages;
      const current = stages?.get(c.stageId);
      if (current) stages!.set(c.stageId, { stage_id: c.stageId, state: c.state, outputs: c.outputs ?? current.outputs });
    }
    for (const a of changes.newAttempts ?? []) {
      this.#runs.get(a.runId)?.attempts.set(a.attemptId, { attempt_id: a.attemptId, stage_id: a.stageId, number: a.number, state: a.state, node_id: '', started_at: new Date(a.startedAtMs ?? atMs), finished_at: null, evidence: null });
    }
    for (const a of changes.finishedAttempts ?? []) {
      const attempts = this.#runs.get(a.runId)?.attempts;
      const started = attempts?.get(a.attemptId)?.started_at ?? new Date(a.startedAtMs ?? atMs);
      attempts?.set(a.attemptId, { attempt_id: a.attemptId, stage_id: a.stageId, number: a.number, state: a.state, node_id: a.nodeId ?? '', started_at: started, finished_at: new Date(atMs), evidence: a.evidence ?? null });
    }
    for (const c of changes.runs ?? []) {
      const mirrored = this.#runs.get(c.runId);
      if (!mirrored) continue;
      const terminal = TERMINAL_RUN_STATES.has(c.state);
      mirrored.row = { ...mirrored.row, state: c.state, reason: c.reason ?? mirrored.row.reason, finished_at: terminal ? new Date(atMs) : mirrored.row.finished_at };
      if (terminal) this.#retire(c.runId);
    }
  }

  /** Keeps a run as stored: its stages (PENDING where no row says otherwise) and attempts. */
  adopt(row: RunRow, stageRows: readonly StageRow[], attemptRows: readonly AttemptRow[]): void {
    const stages = new Map<string, StageRow>(row.definition.stages.map((stage) => [stage.id, { stage_id: stage.id, state: 'PENDING', outputs: {} }]));
    for (const stage of stageRows) stages.set(stage.stage_id, stage);
    this.#runs.set(row.run_id, { row, stages, attempts: new Map(attemptRows.map((a) => [a.attempt_id, a])) });
  }

  #retire(runId: string): void {
    this.#finished.add(runId);
    if (this.#finished.size <= this.maxFinished) return;
    const oldest = this.#finished.values().next().value!;
    this.#finished.delete(oldest);
    this.#runs.delete(oldest);
  }

  /** The run as stored, without its stages (as listed), if this mirror has it. */
  summary(runId: string): Run | undefined {
    const mirrored = this.#runs.get(runId);
    return mirrored && runSummary(mirrored.row);
  }

  /** The run as stored, if this mirror has it. */
  run(runId: string): Run | undefined {
    return this.stored(runId)?.run;
  }

  /** The run as stored, with its definition, if this mirror has it. */
  stored(runId: string): StoredRun | undefined {
    const mirrored = this.#runs.get(runId);
    return mirrored && storedRun(mirrored.row, [...mirrored.stages.values()], [...mirrored.attempts.values()]);
  }
}

function storedRun(row: RunRow, stages: readonly StageRow[], attempts: readonly AttemptRow[]): StoredRun {
  return { run: toRun(row, { definition: row.definition, rows: stages }, attempts), definition: row.definition, deadlineAtMs: row.deadline_at ? row.deadline_at.getTime() : undefined, traceparent: row.traceparent ?? '' };
}

/** Builds the wire Run (without stages) from a stored row, for listings. */
export function runSummary(row: RunSummaryRow): Run {
  return toRun(row, undefined, []);
}

interface StageRow {
  stage_id: string;
  state: StageStatus;
  outputs: Record<string, string>;
}

/**
 * The wire Run of a stored row: its stages are the definition's, in the
 * state their rows give (a stage without one is PENDING); none for a listing
 * (`stages` undefined).
 */
function toRun(row: RunSummaryRow, stages: { definition: Pipeline; rows: readonly StageRow[] } | undefined, attempts: readonly AttemptRow[]): Run {
  const byStage = new Map<string, Attempt[]>();
  for (const a of attempts) {
    const list = byStage.get(a.stage_id) ?? [];
    list.push({
      attemptId: a.attempt_id,
      number: a.number,
      nodeId: a.node_id,
      state: stageStateToWire(a.state),
      startedAt: a.started_at,
      finishedAt: a.finished_at ?? undefined,
      evidence: a.evidence ?? undefined,
    });
    byStage.set(a.stage_id, list);
  }
  const stateById = new Map(stages?.rows.map((s) => [s.stage_id, s]));
  const stageRuns: StageRun[] = stages
    ? stages.definition.stages.map((stage) => ({
        stageId: stage.id,
        framework: stage.framework,
        state: stageStateToWire(stateById.get(stage.id)?.state ?? 'PENDING'),
        needs: stage.needs,
        attempts: byStage.get(stage.id) ?? [],
        outputs: stateById.get(stage.id)?.outputs ?? {},
      }))
    : [];
  return {
    runId: row.run_id,
    pipelineName: row.pipeline_name,
    pipelineVersion: row.pipeline_version,
    state: runStateToWire(row.state),
    inputs: row.inputs,
    stages: stageRuns,
    createdAt: row.created_at,
    finishedAt: row.finished_at ?? undefined,
    idempotencyKey: row.idempotency_key ?? '',
    priority: row.priority,
    labels: row.labels,
    reason: row.reason,
  };
}

export function runStateToWire(state: RunStatus): RunState {
  return RunState[`RUN_STATE_${state}`];
}

export function runStateFromWire(state: RunState): RunStatus | undefined {
  const name = RunState[state];
  return name && state !== RunState.RUN_STATE_UNSPECIFIED ? (name.replace('RUN_STATE_', '') as RunStatus) : undefined;
}

export function stageStateToWire(state: StageStatus): StageState {
  return StageState[`STAGE_STATE_${state}`];
}

export type { RunRow };
