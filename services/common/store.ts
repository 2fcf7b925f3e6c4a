/**
 * The durable store every service uses: PostgreSQL semantics, one SQL dialect.
 * The embedded profile uses PGlite; the distributed profile PostgreSQL (`pg`).
 */
export interface Queryable {
  /** Runs one statement with `$1..$n` parameters and returns its rows. */
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<Row[]>;
}

export interface Store extends Queryable {
  /** Runs `fn` in one transaction: all of its statements commit together or none do. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Runs statements without parameters in one round trip, as one transaction
   * (PostgreSQL's simple query protocol): all commit or none do. Values go in
   * as sqlLiteral(). A parameterised round trip per statement costs more than
   * the rows it writes on the scheduler's hot path.
   */
  script(statements: readonly string[]): Promise<void>;
  /** Flushes and closes the store. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * A string as an SQL literal (standard_conforming_strings, on by default in
 * PostgreSQL and PGlite: only the quote is special). JSON text never holds
 * the NUL character PostgreSQL cannot store, so none is accepted.
 * @throws Error for a string holding NUL
 */
export function sqlLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('an SQL literal cannot hold the NUL character');
  return `'${value.replaceAll("'", "''")}'`;
}

/**
 * Schema migrations, applied in order once each. Never edit a released
 * migration: add a new one.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE pipelines (
     name text NOT NULL,
     version text NOT NULL,
     seq integer NOT NULL,
     definition jsonb NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (name, version)
   );
   CREATE TABLE runs (
     run_id text PRIMARY KEY,
     pipeline_name text NOT NULL,
     pipeline_version text NOT NULL,
     definition jsonb NOT NULL,
     state text NOT NULL,
     inputs jsonb NOT NULL,
     labels jsonb NOT NULL,
     priority integer NOT NULL DEFAULT 0,
     idempotency_key text UNIQUE,
     reason text NOT NULL DEFAULT '',
     created_at timestamptz NOT NULL DEFAULT now(),
     finished_at timestamptz
   );
   CREATE INDEX runs_created_at ON runs (created_at DESC);
   CREATE TABLE stage_runs (
     run_id text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
     stage_id text NOT NULL,
     state text NOT NULL,
     outputs jsonb NOT NULL DEFAULT '{}',
     PRIMARY KEY (run_id, stage_id)
   );
   CREATE TABLE attempts (
     attempt_id text PRIMARY KEY,
     run_id text NOT NULL,
     stage_id text NOT NULL,
     number integer NOT NULL,
     state text NOT NULL,
     node_id text NOT NULL DEFAULT '',
     started_at timestamptz NOT NULL DEFAULT now(),
     finished_at timestamptz,
     evidence jsonb,
     FOREIGN KEY (run_id, stage_id) REFERENCES stage_runs (run_id, stage_id) ON DELETE CASCADE
   );
   CREATE INDEX attempts_run ON attempts (run_id);`,
  // The run deadline, so a run resumed after a restart still ends on time.
  `ALTER TABLE runs ADD COLUMN deadline_at timestamptz`,
  // Named baselines of the metrics service, which regressions are measured against.
  `CREATE TABLE metrics_baselines (
     name text PRIMARY KEY,
     definition jsonb NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT now()
   )`,
  // The run's W3C trace context, so a run resumed after a restart stays in its trace.
  `ALTER TABLE runs ADD COLUMN traceparent text NOT NULL DEFAULT ''`,
  // The scheduler writes a run, its stages and their attempts in one
  // transaction per step, which keeps them consistent; the foreign-key checks
  // cost about a quarter of every commit on PGlite and guarded nothing more.
  `ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_run_id_stage_id_fkey;
   ALTER TABLE stage_runs DROP CONSTRAINT IF EXISTS stage_runs_run_id_fkey`,
  // One scheduler step in one call (RunStore.apply): the function's statements
  // are planned once per connection, where the same statements sent as text
  // were parsed and planned again on every commit.
  `CREATE FUNCTION stagemesh_apply_step(changes jsonb) RETURNS void LANGUAGE plpgsql AS $$
   BEGIN
     IF changes ? 'new_runs' THEN
       INSERT INTO runs (run_id, pipeline_name, pipeline_version, definition, state, inputs, labels, priority, idempotency_key, deadline_at, traceparent, created_at)
       SELECT run_id, pipeline_name, pipeline_version, definition, state, inputs, labels, priority, nullif(idempotency_key, ''), deadline_at, traceparent, created_at
         FROM jsonb_to_recordset(changes->'new_runs') AS x(run_id text, pipeline_name text, pipeline_version text, definition jsonb,
              state text, inputs jsonb, labels jsonb, priority int, idempotency_key text, deadline_at timestamptz, traceparent text, created_at timestamptz);
       INSERT INTO stage_runs (run_id, stage_id, state)
       SELECT run_id, stage_id, 'PENDING' FROM jsonb_to_recordset(changes->'new_stages') AS x(run_id text, stage_id text);
     END IF;
     IF changes ? 'stages' THEN
       UPDATE stage_runs s SET state = x.state, outputs = coalesce(x.outputs, s.outputs)
         FROM jsonb_to_recordset(changes->'stages') AS x(run_id text, stage_id text, state text, outputs jsonb)
        WHERE s.run_id = x.run_id AND s.stage_id = x.stage_id;
     END IF;
     IF changes ? 'new_attempts' THEN
       INSERT INTO attempts (attempt_id, run_id, stage_id, number, state, started_at)
       SELECT attempt_id, run_id, stage_id, number, state, coalesce(started_at, now())
         FROM jsonb_to_recordset(changes->'new_attempts') AS x(attempt_id text, run_id text, stage_id text, number int, state text, started_at timestamptz);
     END IF;
     IF changes ? 'finished_attempts' THEN
       UPDATE attempts a SET state = x.state, node_id = x.node_id, evidence = x.evidence, finished_at = now()
         FROM jsonb_to_recordset(changes->'finished_attempts') AS x(attempt_id text, state text, node_id text, evidence jsonb)
        WHERE a.attempt_id = x.attempt_id;
     END IF;
     IF changes ? 'runs' THEN
       UPDATE runs r SET state = x.state, reason = coalesce(x.reason, r.reason),
              finished_at = CASE WHEN x.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') THEN now() ELSE r.finished_at END
         FROM jsonb_to_recordset(changes->'runs') AS x(run_id text, state text, reason text)
        WHERE r.run_id = x.run_id;
     END IF;
   END
   $$`,
  // Each version's triggers beside its definition, so the trigger listener
  // finds the pipelines that declare some without reading every definition.
  `ALTER TABLE pipelines ADD COLUMN triggers jsonb NOT NULL DEFAULT '[]';
   UPDATE pipelines SET triggers = coalesce(definition->'triggers', '[]')`,
  // A new run's stage rows are inserted in the state its first step gives
  // them, instead of PENDING and then updated in the same call (a third less
  // row work in the first commit of a run whose stages are all ready), and
  // the times an attempt or a run finished come from the scheduler, like the
  // times they started, so what it remembers of a run equals what is stored.
  `CREATE OR REPLACE FUNCTION stagemesh_apply_step(changes jsonb) RETURNS void LANGUAGE plpgsql AS $$
   BEGIN
     IF changes ? 'new_runs' THEN
       INSERT INTO runs (run_id, pipeline_name, pipeline_version, definition, state, inputs, labels, priority, idempotency_key, deadline_at, traceparent, created_at)
       SELECT run_id, pipeline_name, pipeline_version, definition, state, inputs, labels, priority, nullif(idempotency_key, ''), deadline_at, traceparent, created_at
         FROM jsonb_to_recordset(changes->'new_runs') AS x(run_id text, pipeline_name text, pipeline_version text, definition jsonb,
              state text, inputs jsonb, labels jsonb, priority int, idempotency_key text, deadline_at timestamptz, traceparent text, created_at timestamptz);
       INSERT INTO stage_runs (run_id, stage_id, state)
       SELECT run_id, stage_id, coalesce(state, 'PENDING') FROM jsonb_to_recordset(changes->'new_stages') AS x(run_id text, stage_id text, state text);
     END IF;
     IF changes ? 'stages' THEN
       UPDATE stage_runs s SET state = x.state, outputs = coalesce(x.outputs, s.outputs)
         FROM jsonb_to_recordset(changes->'stages') AS x(run_id text, stage_id text, state text, outputs jsonb)
        WHERE s.run_id = x.run_id AND s.stage_id = x.stage_id;
     END IF;
     IF changes ? 'new_attempts' THEN
       INSERT INTO attempts (attempt_id, run_id, stage_id, number, state, started_at)
       SELECT attempt_id, run_id, stage_id, number, state, coalesce(started_at, now())
         FROM jsonb_to_recordset(changes->'new_attempts') AS x(attempt_id text, run_id text, stage_id text, number int, state text, started_at timestamptz);
     END IF;
     IF changes ? 'finished_attempts' THEN
       UPDATE attempts a SET state = x.state, node_id = x.node_id, evidence = x.evidence, finished_at = coalesce(x.finished_at, now())
         FROM jsonb_to_recordset(changes->'finished_attempts') AS x(attempt_id text, state text, node_id text, evidence jsonb, finished_at timestamptz)
        WHERE a.attempt_id = x.attempt_id;
     END IF;
     IF changes ? 'runs' THEN
       UPDATE runs r SET state = x.state, reason = coalesce(x.reason, r.reason),
              finished_at = CASE WHEN x.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') THEN coalesce(x.finished_at, now()) ELSE r.finished_at END
         FROM jsonb_to_recordset(changes->'runs') AS x(run_id text, state text, reason text, finished_at timestamptz)
        WHERE r.run_id = x.run_id;
     END IF;
   END
   $$`,
  // What a step stores is what recovery and the readers of a run need: a
  // stage's row when the stage ends and an attempt's row, whole, when the
  // attempt ends; stages and attempts in flight live in the scheduler's
  // memory and run again after a crash. A stage costs two inserts instead of
  // two inserts and three updates. Rows an older version left open are still
  // closed by the same statements (ON CONFLICT).
  `CREATE OR REPLACE FUNCTION stagemesh_apply_step(changes jsonb) RETURNS void LANGUAGE plpgsql AS $$
   BEGIN
     IF changes ? 'new_runs' THEN
       INSERT INTO runs (run_id, pipeline_name, pipeline_version, definition, state, inputs, labels, priority, idempotency_key, deadline_at, traceparent, created_at)
       SELECT run_id, pipeline_name, pipeline_version, definition, state, inputs, labels, priority, nullif(idempotency_key, ''), deadline_at, traceparent, created_at
         FROM jsonb_to_recordset(changes->'new_runs') AS x(run_id text, pipeline_name text, pipeline_version text, definition jsonb,
              state text, inputs jsonb, labels jsonb, priority int, idempotency_key text, deadline_at timestamptz, traceparent text, created_at timestamptz);
     END IF;
     IF changes ? 'ended_stages' THEN
       INSERT INTO stage_runs (run_id, stage_id, state, outputs)
       SELECT run_id, stage_id, state, coalesce(outputs, '{}')
         FROM jsonb_to_recordset(changes->'ended_stages') AS x(run_id text, stage_id text, state text, outputs jsonb)
       ON CONFLICT (run_id, stage_id) DO UPDATE SET state = EXCLUDED.state, outputs = EXCLUDED.outputs;
     END IF;
     IF changes ? 'ended_attempts' THEN
       INSERT INTO attempts (attempt_id, run_id, stage_id, number, state, node_id, started_at, finished_at, evidence)
       SELECT attempt_id, run_id, stage_id, number, state, node_id, started_at, finished_at, evidence
         FROM jsonb_to_recordset(changes->'ended_attempts') AS x(attempt_id text, run_id text, stage_id text, number int, state text,
              node_id text, started_at timestamptz, finished_at timestamptz, evidence jsonb)
       ON CONFLICT (attempt_id) DO UPDATE SET state = EXCLUDED.state, node_id = EXCLUDED.node_id, finished_at = EXCLUDED.finished_at, evidence = EXCLUDED.evidence;
     END IF;
     IF changes ? 'runs' THEN
       UPDATE runs r SET state = x.state, reason = coalesce(x.reason, r.reason),
              finished_at = CASE WHEN x.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') THEN coalesce(x.finished_at, now()) ELSE r.finished_at END
         FROM jsonb_to_recordset(changes->'runs') AS x(run_id text, state text, reason text, finished_at timestamptz)
        WHERE r.run_id = x.run_id;
     END IF;
   END
   $$`,
  // A run of a registered version, as registered, refers to the version's
  // definition in pipelines instead of carrying a copy (NULL): a version
  // never changes, and a copy per run cost every submit of a large pipeline
  // (32 ms for 5,000 stages) and its size on disk.
  `ALTER TABLE runs ALTER COLUMN definition DROP NOT NULL`,
  // The attempt a stage ended with is stored in the stage's row
  // (final_attempt) instead of a row of its own: one row per ended stage
  // instead of two, and one index entry instead of three. attempts keeps the
  // attempts that ended without their stage (failed and retried, lost,
  // interrupted). Applying 1,000 ended stages took about a quarter less.
  `ALTER TABLE stage_runs ADD COLUMN final_attempt jsonb;
   CREATE OR REPLACE FUNCTION stagemesh_apply_step(changes jsonb) RETURNS void LANGUAGE plpgsql AS $$
   BEGIN
     IF changes ? 'new_runs' THEN
       INSERT INTO runs (run_id, pipeline_name, pipeline_version, definition, state, inputs, labels, priority, idempotency_key, deadline_at, traceparent, created_at)
       SELECT run_id, pipeline_name, pipeline_version, definition, state, inputs, labels, priority, nullif(idempotency_key, ''), deadline_at, traceparent, created_at
         FROM jsonb_to_recordset(changes->'new_runs') AS x(run_id text, pipeline_name text, pipeline_version text, definition jsonb,
              state text, inputs jsonb, labels jsonb, priority int, idempotency_key text, deadline_at timestamptz, traceparent text, created_at timestamptz);
     END IF;
     IF changes ? 'ended_stages' THEN
       INSERT INTO stage_runs (run_id, stage_id, state, outputs, final_attempt)
       SELECT run_id, stage_id, state, coalesce(outputs, '{}'), final_attempt
         FROM jsonb_to_recordset(changes->'ended_stages') AS x(run_id text, stage_id text, state text, outputs jsonb, final_attempt jsonb)
       ON CONFLICT (run_id, stage_id) DO UPDATE SET state = EXCLUDED.state, outputs = EXCLUDED.outputs, final_attempt = EXCLUDED.final_attempt;
     END IF;
     IF changes ? 'ended_attempts' THEN
       INSERT INTO attempts (attempt_id, run_id, stage_id, number, state, node_id, started_at, finished_at, evidence)
       SELECT attempt_id, run_id, stage_id, number, state, node_id, started_at, finished_at, evidence
         FROM jsonb_to_recordset(changes->'ended_attempts') AS x(attempt_id text, run_id text, stage_id text, number int, state text,
              node_id text, started_at timestamptz, finished_at timestamptz, evidence jsonb)
       ON CONFLICT (attempt_id) DO UPDATE SET state = EXCLUDED.state, node_id = EXCLUDED.node_id, finished_at = EXCLUDED.finished_at, evidence = EXCLUDED.evidence;
     END IF;
     IF changes ? 'runs' THEN
       UPDATE runs r SET state = x.state, reason = coalesce(x.reason, r.reason),
              finished_at = CASE WHEN x.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') THEN coalesce(x.finished_at, now()) ELSE r.finished_at END
         FROM jsonb_to_recordset(changes->'runs') AS x(run_id text, state text, reason text, finished_at timestamptz)
        WHERE r.run_id = x.run_id;
     END IF;
   END
   $$`,
  // 12: several schedulers over one PostgreSQL (the distributed profile).
  // Each holds a row in scheduler_instances while it lives and owns the runs
  // it started or claimed (runs.owner). A scheduler whose row is gone (a peer
  // found it expired and took its runs) can no longer commit: stagemesh_fence
  // raises SM001, and holds the row FOR SHARE until the step commits, so a
  // peer's claim waits for that step and never overlaps it. The fence also
  // sets stagemesh.owner for the transaction: new runs default to it.
  `CREATE TABLE scheduler_instances (
     instance_id text PRIMARY KEY,
     expires_at timestamptz NOT NULL
   );
   ALTER TABLE runs ADD COLUMN owner text DEFAULT nullif(current_setting('stagemesh.owner', true), '');
   CREATE INDEX runs_unfinished_owner ON runs (owner) WHERE state IN ('PENDING', 'RUNNING');
   CREATE FUNCTION stagemesh_fence(instance text) RETURNS void LANGUAGE plpgsql AS $$
   BEGIN
     PERFORM 1 FROM scheduler_instances WHERE instance_id = instance FOR SHARE;
     IF NOT FOUND THEN
       RAISE EXCEPTION 'scheduler % no longer owns its runs (a peer took them after its lease expired)', instance USING ERRCODE = 'SM001';
     END IF;
     PERFORM set_config('stagemesh.owner', instance, true);
   END
   $$`,
];

/**
 * The statements of a migration: split at semicolons that end a line,
 * except inside a dollar-quoted body (a function's).
 */
export function migrationStatements(sql: string): string[] {
  const statements: string[] = [];
  let current = '';
  let quoted = false;
  for (const line of sql.split('\n')) {
    quoted = (line.split('$$').length - 1) % 2 === 1 ? !quoted : quoted;
    current += `${line}\n`;
    if (!quoted && /;\s*$/.test(line)) {
      statements.push(current.replace(/;\s*$/, ''));
      current = '';
    }
  }
  statements.push(current);
  return statements.map((s) => s.trim()).filter(Boolean);
}

/** Advisory lock key held while a migration runs (and while a schema is created: see PostgresStore). */
export const MIGRATION_LOCK = 0x5374_6167;

/** Applies the migrations the store has not seen yet, in one transaction each. */
export async function migrate(store: Store): Promise<void> {
  // Under the lock: processes starting together on a new schema would otherwise race to create the table.
  await store.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
  });
  const rows = await store.query<{ version: number }>('SELECT version FROM schema_migrations');
  const applied = new Set(rows.map((r) => r.version));
  for (const [index, sql] of MIGRATIONS.entries()) {
    const version = index + 1;
    if (applied.has(version)) continue;
    await store.transaction(async (tx) => {
      // Replicas starting together take turns; the one that waited sees the migration done.
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const [done] = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [version]);
      if (done) return;
      for (const statement of migrationStatements(sql)) await tx.query(statement);
      await tx.query('INSERT INTO schema_migrations (version) VALUES ($1)', [version]);
    });
  }
}
