import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { PgliteStore } from '../services/common/pglite-store.js';
import { PostgresStore } from '../services/common/postgres-store.js';
import { Evidence, Pipeline, Run, RunState, StageState } from '../services/common/proto.js';
import { MIGRATIONS, sqlLiteral, type Store } from '../services/common/store.js';
import { RunStore, type NewRun } from '../services/scheduler/run-store.js';
import { queryTestPostgres, requirePostgres, TEST_POSTGRES_URL } from './support/tools.js';

const POSTGRES_URL = TEST_POSTGRES_URL;

const pipeline = (name: string, stages = ['a', 'b']) => Pipeline.fromPartial({ name, stages: stages.map((id, i) => ({ id, framework: 'noop', needs: i ? [stages[i - 1]!] : [] })) });

const newRun = (name: string, fields: Partial<NewRun> = {}): NewRun => ({
  runId: randomUUID(),
  pipeline: { ...pipeline(name), version: '1' },
  state: 'RUNNING',
  inputs: { ref: 'main' },
  labels: {},
  priority: 0,
  idempotencyKey: '',
  createdAtMs: Date.now(),
  ...fields,
});

interface StoreUnderTest {
  store: Store;
  /** Opens the same database again (a restart). */
  reopen(): Promise<Store>;
  /** Removes everything this test made. */
  drop(): Promise<void>;
}

/** The one suite every store backend must pass. */
function storeConformance(backend: string, open: (ctx: Mocha.Context) => Promise<StoreUnderTest>) {
  describe(`store - ${backend} conformance`, function () {
    let t: StoreUnderTest;
    let runs: RunStore;

    before(async function () {
      t = await open(this);
      runs = new RunStore(t.store);
    });

    after(async () => {
      await t?.drop();
    });

    it('applies each migration once, also when opened again', async () => {
      const again = await t.reopen();
      const rows = await again.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
      assert.equal(rows[0]!.n, MIGRATIONS.length);
      await again.close();
    });

    it('numbers pipeline versions and keeps each version immutable', async () => {
      assert.equal((await runs.registerPipeline(pipeline('reg'))).version, '1');
      assert.equal((await runs.registerPipeline(pipeline('reg', ['a']))).version, '2');
      assert.equal((await runs.registerPipeline({ ...pipeline('reg', ['a']), version: '2' })).version, '2');
      await assert.rejects(runs.registerPipeline({ ...pipeline('reg', ['z']), version: '2' }), { name: 'AlreadyExistsError' });
      assert.equal((await runs.getPipeline('reg')).stages.length, 1);
      assert.equal((await runs.getPipeline('reg', '1')).stages.length, 2);
      await assert.rejects(runs.getPipeline('reg', '9'), { name: 'NotFoundError' });
      await runs.registerPipeline(pipeline('alpha'));
      assert.deepEqual((await runs.listPipelines(10)).map((p) => `${p.name}@${p.version}`), ['alpha@1', 'reg@2']);
      assert.deepEqual((await runs.listPipelines(10, 'alpha')).map((p) => p.name), ['reg']);
    });

    it('lists the pipelines whose latest version declares triggers', async () => {
      const push = [{ event: 'git.push', match: { repo: 'x' } }];
      await runs.registerPipeline({ ...pipeline('trig-once'), triggers: push });
      await runs.registerPipeline(pipeline('trig-once', ['a']));
      await runs.registerPipeline({ ...pipeline('trig-now', ['a']), triggers: push });
      await runs.registerPipeline({ ...pipeline('trig-now'), triggers: push });
      const triggered = (await runs.triggeredPipelines()).filter((p) => p.name.startsWith('trig-'));
      assert.deepEqual(triggered.map((p) => [p.name, p.version, p.triggers.length]), [['trig-now', '2', 1]]);
    });

    it('serves a pipeline a shared store has newly registered elsewhere; an exclusive store answers from memory', async () => {
      const other = new RunStore(t.store);
      await runs.registerPipeline(pipeline('shared', ['a']));
      assert.equal((await runs.getPipeline('shared')).version, '1');
      await other.registerPipeline(pipeline('shared', ['a', 'b', 'c']));
      assert.equal((await runs.getPipeline('shared')).version, '2');
      const exclusive = new RunStore(t.store, { exclusive: true });
      assert.equal((await exclusive.getPipeline('shared')).version, '2');
      await t.store.query(`DELETE FROM pipelines WHERE name = 'shared'`);
      assert.equal((await exclusive.getPipeline('shared')).version, '2');
      assert.equal((await exclusive.getPipeline('shared', '2')).stages.length, 3);
      await assert.rejects(runs.getPipeline('shared'), { name: 'NotFoundError' });
    });

    it('stores a run at once and its stages and attempts as they end; GetRun of a live run shows them in flight', async () => {
      const run = newRun('write');
      await runs.apply({
        newRuns: [run],
        stages: [{ runId: run.runId, stageId: 'a', state: 'QUEUED' }],
        newAttempts: [{ attemptId: `${run.runId}-1`, runId: run.runId, stageId: 'a', number: 1, state: 'QUEUED', startedAtMs: 1_700_000_000_000 }],
      });
      const states = (r: Run) => r.stages.map((s) => [s.stageId, s.state, s.attempts.length]);
      // The store holds the run; the stage in flight and its attempt are only in memory.
      assert.deepEqual(states(await runs.getRun(run.runId)), [['a', StageState.STAGE_STATE_PENDING, 0], ['b', StageState.STAGE_STATE_PENDING, 0]]);
      assert.deepEqual(states(await runs.getRun(run.runId, { live: true })), [['a', StageState.STAGE_STATE_QUEUED, 1], ['b', StageState.STAGE_STATE_PENDING, 0]]);
      await runs.apply({
        finishedAttempts: [{ attemptId: `${run.runId}-1`, runId: run.runId, stageId: 'a', number: 1, state: 'SUCCEEDED', nodeId: 'n1', evidence: Evidence.fromPartial({ exitCode: 0, durationMs: 12, logTail: 'ok' }), startedAtMs: 1_700_000_000_000 }],
        stages: [{ runId: run.runId, stageId: 'a', state: 'SUCCEEDED', outputs: { version: '1' } }],
        runs: [{ runId: run.runId, state: 'SUCCEEDED', reason: '' }],
      });
      const stored = await runs.getRun(run.runId);
      assert.equal(stored.state, RunState.RUN_STATE_SUCCEEDED);
      assert.ok(stored.finishedAt instanceof Date);
      assert.deepEqual(stored.inputs, { ref: 'main' });
      assert.deepEqual(states(stored), [['a', StageState.STAGE_STATE_SUCCEEDED, 1], ['b', StageState.STAGE_STATE_PENDING, 0]]);
      assert.deepEqual(stored.stages[0]!.outputs, { version: '1' });
      const attempt = stored.stages[0]!.attempts[0]!;
      assert.equal(attempt.nodeId, 'n1');
      assert.equal(attempt.evidence?.durationMs, 12);
      assert.equal(attempt.state, StageState.STAGE_STATE_SUCCEEDED);
      const [loaded] = await runs.loadRuns([run.runId, 'no-such-run']);
      assert.equal(loaded?.definition.name, 'write');
      assert.equal(loaded?.run.createdAt?.getTime(), run.createdAtMs);
      assert.equal(loaded?.run.stages[0]!.attempts[0]!.startedAt?.getTime(), 1_700_000_000_000);
    });

    it('stores the attempt a stage ended with in the stage row, the attempts before it in attempts, and reads them back in order', async () => {
      const run = newRun('retried');
      await runs.apply({ newRuns: [run] });
      const attempt = (number: number, state: 'FAILED' | 'SUCCEEDED') => ({
        attemptId: `${run.runId}-${number}`, runId: run.runId, stageId: 'a', number, state, nodeId: `n${number}`,
        evidence: Evidence.fromPartial({ exitCode: state === 'FAILED' ? 1 : 0, durationMs: number }), startedAtMs: 1_700_000_000_000 + number,
      });
      await runs.apply({ finishedAttempts: [attempt(1, 'FAILED')] });
      await runs.apply({ finishedAttempts: [attempt(2, 'SUCCEEDED')], stages: [{ runId: run.runId, stageId: 'a', state: 'SUCCEEDED', outputs: {} }] });
      const inAttempts = await t.store.query<{ attempt_id: string }>('SELECT attempt_id FROM attempts WHERE run_id = $1', [run.runId]);
      assert.deepEqual(inAttempts.map((r) => r.attempt_id), [`${run.runId}-1`]);
      const [stageRow] = await t.store.query<{ final_attempt: { attempt_id: string; node_id: string } }>(`SELECT final_attempt FROM stage_runs WHERE run_id = $1 AND stage_id = 'a'`, [run.runId]);
      assert.deepEqual([stageRow!.final_attempt.attempt_id, stageRow!.final_attempt.node_id], [`${run.runId}-2`, 'n2']);
      const [loaded] = await new RunStore(t.store).loadRuns([run.runId]);
      const read = loaded!.run.stages[0]!.attempts.map((a) => [a.number, a.state, a.nodeId, a.evidence?.exitCode, a.startedAt?.getTime(), a.finishedAt instanceof Date]);
      assert.deepEqual(read, [
        [1, StageState.STAGE_STATE_FAILED, 'n1', 1, 1_700_000_000_001, true],
        [2, StageState.STAGE_STATE_SUCCEEDED, 'n2', 0, 1_700_000_000_002, true],
      ]);
      // The basic view, read from the store: the run as loaded, without its stages.
      const basic = await new RunStore(t.store).getRun(run.runId, { basic: true });
      assert.deepEqual(basic, { ...loaded!.run, stages: [] });
      await assert.rejects(new RunStore(t.store).getRun('no-such-run', { basic: true }), { name: 'NotFoundError' });
    });

    it('closes an attempt an older version stored open, and overwrites a stage row it left in flight', async () => {
      const run = newRun('upgraded');
      await runs.apply({ newRuns: [run] });
      // Rows as versions before migration 9 wrote them when a stage was dispatched.
      await t.store.query(`INSERT INTO stage_runs (run_id, stage_id, state) VALUES ($1, 'a', 'QUEUED')`, [run.runId]);
      await t.store.query(`INSERT INTO attempts (attempt_id, run_id, stage_id, number, state, started_at) VALUES ($1, $2, 'a', 1, 'QUEUED', to_timestamp(1700000000))`, [`${run.runId}-1`, run.runId]);
      await runs.apply({
        finishedAttempts: [{ attemptId: `${run.runId}-1`, runId: run.runId, stageId: 'a', number: 1, state: 'CANCELLED', startedAtMs: 1_700_000_000_000 }],
        stages: [{ runId: run.runId, stageId: 'a', state: 'CANCELLED' }],
      });
      const stored = await runs.getRun(run.runId);
      assert.deepEqual(stored.stages[0]!.attempts.map((a) => [a.number, a.state, a.finishedAt instanceof Date]), [[1, StageState.STAGE_STATE_CANCELLED, true]]);
      assert.equal(stored.stages[0]!.state, StageState.STAGE_STATE_CANCELLED);
    });

    it('answers GetRun of an exclusive store from memory: what is stored, and the stages and attempts in flight', async () => {
      const exclusive = new RunStore(t.store, { exclusive: true });
      const shared = new RunStore(t.store);
      const run = newRun('mirrored');
      // One start time per attempt, however often the steps below name it (as the scheduler does).
      const startedAtMs = Date.now();
      const attempt = (stageId: string, number: number) => ({ attemptId: `${run.runId}-${stageId}${number}`, runId: run.runId, stageId, number, startedAtMs: startedAtMs + number });
      const steps = [
        { newRuns: [run], stages: [{ runId: run.runId, stageId: 'a', state: 'QUEUED' as const }], newAttempts: [{ ...attempt('a', 1), state: 'QUEUED' as const }] },
        {
          finishedAttempts: [{ ...attempt('a', 1), state: 'FAILED' as const, nodeId: 'n1', evidence: Evidence.fromPartial({ exitCode: 2, durationMs: 7, logTail: 'boom', error: 'exit 2' }) }],
          newAttempts: [{ ...attempt('a', 2), state: 'QUEUED' as const }],
        },
        {
          finishedAttempts: [{ ...attempt('a', 2), state: 'SUCCEEDED' as const, nodeId: 'n2', evidence: Evidence.fromPartial({ exitCode: 0, durationMs: 3, logTail: 'ok' }) }],
          stages: [
            { runId: run.runId, stageId: 'a', state: 'SUCCEEDED' as const, outputs: { version: '7' } },
            { runId: run.runId, stageId: 'b', state: 'SKIPPED' as const },
          ],
          runs: [{ runId: run.runId, state: 'SUCCEEDED' as const, reason: 'done' }],
        },
      ];
      const attempts = (r: Run) => r.stages[0]!.attempts.map((a) => [a.number, a.state]);
      const { QUEUED, FAILED, SUCCEEDED } = { QUEUED: StageState.STAGE_STATE_QUEUED, FAILED: StageState.STAGE_STATE_FAILED, SUCCEEDED: StageState.STAGE_STATE_SUCCEEDED };
      // Memory adds the attempt in flight to what the store holds.
      const inFlight = [
        { memory: [[1, QUEUED]], stored: [] },
        { memory: [[1, FAILED], [2, QUEUED]], stored: [[1, FAILED]] },
      ];
      for (const [i, step] of steps.entries()) {
        await exclusive.apply(step);
        const [fromMemory, fromStore] = [await exclusive.getRun(run.runId), await shared.getRun(run.runId)];
        if (inFlight[i]) {
          assert.deepEqual([attempts(fromMemory), attempts(fromStore)], [inFlight[i].memory, inFlight[i].stored]);
          assert.deepEqual([fromMemory.stages[0]!.state, fromStore.stages[0]!.state], [QUEUED, StageState.STAGE_STATE_PENDING]);
        } else {
          // Once it has ended, memory and the store agree exactly.
          assert.deepEqual(Run.toJSON(fromMemory), Run.toJSON(fromStore));
        }
      }
      const finished = await exclusive.getRun(run.runId);
      assert.equal(finished.state, RunState.RUN_STATE_SUCCEEDED);
      assert.deepEqual(finished.stages[0]!.attempts.map((a) => [a.number, a.nodeId, a.evidence?.logTail]), [[1, 'n1', 'boom'], [2, 'n2', 'ok']]);
      assert.deepEqual(attempts(finished), [[1, FAILED], [2, SUCCEEDED]]);
      // The answer came from memory: with the rows gone, only the shared store notices.
      await t.store.query('DELETE FROM runs WHERE run_id = $1', [run.runId]);
      assert.equal((await exclusive.getRun(run.runId)).reason, 'done');
      assert.deepEqual((await exclusive.loadRuns([run.runId])).map((r) => [r.run.reason, r.definition.name]), [['done', 'mirrored']]);
      await assert.rejects(shared.getRun(run.runId), { name: 'NotFoundError' });
      assert.deepEqual(await shared.loadRuns([run.runId]), []);
    });

    it('stores a run of a registered version by reference and reads it back with that definition', async () => {
      const registered = await runs.registerPipeline(pipeline(`by-ref-${randomUUID()}`, ['a', 'b', 'c']));
      const run = newRun(registered.name, { pipeline: registered, registered: true });
      await runs.apply({ newRuns: [run], stages: [{ runId: run.runId, stageId: 'a', state: 'SUCCEEDED', outputs: { k: 'v' } }] });
      const [row] = await t.store.query<{ copied: boolean }>('SELECT definition IS NOT NULL AS copied FROM runs WHERE run_id = $1', [run.runId]);
      assert.equal(row!.copied, false);
      const [loaded] = await new RunStore(t.store).loadRuns([run.runId]);
      assert.deepEqual(Pipeline.toJSON(loaded!.definition), Pipeline.toJSON(registered));
      assert.deepEqual(loaded!.run.stages.map((s) => [s.stageId, s.state]), [['a', StageState.STAGE_STATE_SUCCEEDED], ['b', StageState.STAGE_STATE_PENDING], ['c', StageState.STAGE_STATE_PENDING]]);
      // A run of the same version with another definition (a matrix expanded) keeps its own copy.
      const expanded = newRun(registered.name, { pipeline: { ...registered, stages: registered.stages.slice(0, 1) } });
      await runs.apply({ newRuns: [expanded] });
      assert.deepEqual((await new RunStore(t.store).loadRuns([expanded.runId]))[0]!.run.stages.map((s) => s.stageId), ['a']);
      assert.deepEqual((await runs.listRuns({ limit: 2, pipelineName: registered.name })).map((r) => r.run_id).sort(), [run.runId, expanded.runId].sort());
    });

    it('stores quotes, backslashes and SQL in values exactly as given, and refuses NUL', async () => {
      const hostile = `it's a \\ back'slash'); DROP TABLE runs; -- $$ \u00e9 "quoted"`;
      const run = newRun('quoting', { inputs: { note: hostile }, labels: { [`key'`]: hostile } });
      await runs.apply({ newRuns: [run], stages: [{ runId: run.runId, stageId: 'a', state: 'SUCCEEDED', outputs: { out: hostile } }] });
      const stored = await runs.getRun(run.runId);
      assert.deepEqual(stored.inputs, { note: hostile });
      assert.deepEqual(stored.labels, { [`key'`]: hostile });
      assert.deepEqual(stored.stages[0]!.outputs, { out: hostile });
      assert.throws(() => sqlLiteral('a\0b'), /NUL/);
    });

    it('writes nothing of a step whose statement fails', async () => {
      const run = newRun('atomic');
      await runs.apply({ newRuns: [run] });
      await assert.rejects(
        runs.apply({
          stages: [{ runId: run.runId, stageId: 'a', state: 'SUCCEEDED' }],
          // An attempt without its stage breaks a NOT NULL constraint, after the stage's row was written.
          finishedAttempts: [{ attemptId: `${run.runId}-1`, runId: run.runId, stageId: null as unknown as string, number: 1, state: 'SUCCEEDED' }],
          runs: [{ runId: run.runId, state: 'FAILED', reason: 'should not stick' }],
        }),
      );
      const stored = await runs.getRun(run.runId);
      assert.equal(stored.state, RunState.RUN_STATE_RUNNING);
      assert.equal(stored.reason, '');
      assert.equal(stored.stages[0]!.state, StageState.STAGE_STATE_PENDING);
      await assert.rejects(runs.apply({ newRuns: [newRun('atomic', { runId: run.runId })] }));
    });

    it('finds a run by idempotency key and refuses a second run with the same key', async () => {
      const key = `key-${randomUUID()}`;
      const run = newRun('idem', { idempotencyKey: key });
      await runs.apply({ newRuns: [run] });
      assert.equal(await runs.findRunByIdempotencyKey(key), run.runId);
      assert.equal(await runs.findRunByIdempotencyKey('missing'), undefined);
      await assert.rejects(runs.apply({ newRuns: [newRun('idem', { idempotencyKey: key })] }));
    });

    it('pages runs newest first, filters them, and lists the unfinished ones', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const run = newRun('paged');
        ids.push(run.runId);
        await runs.apply({ newRuns: [run] });
        await new Promise((r) => setTimeout(r, 5));
      }
      await runs.apply({ runs: [{ runId: ids[0]!, state: 'CANCELLED', reason: 'test' }] });
      const first = await runs.listRuns({ limit: 2, pipelineName: 'paged' });
      assert.deepEqual(first.map((r) => r.run_id), [ids[2], ids[1]]);
      const last = first[1]!;
      const second = await runs.listRuns({ limit: 2, pipelineName: 'paged', before: { createdAt: last.created_at.toISOString(), runId: last.run_id } });
      assert.deepEqual(second.map((r) => r.run_id), [ids[0]]);
      assert.deepEqual((await runs.listRuns({ limit: 10, pipelineName: 'paged', state: 'CANCELLED' })).map((r) => r.run_id), [ids[0]]);
      const unfinished = await runs.unfinishedRunIds();
      assert.ok(ids.slice(1).every((id) => unfinished.includes(id)));
      assert.ok(!unfinished.includes(ids[0]!));
    });
  });
}

storeConformance('PGlite', async () => {
  const dataDir = `memory://conformance-${randomUUID()}`;
  const store = await PgliteStore.open(dataDir);
  return {
    store,
    // An in-memory PGlite cannot be reopened; running migrate again on it is the same check.
    reopen: async () => {
      const { migrate } = await import('../services/common/store.js');
      await migrate(store);
      return { query: store.query.bind(store), transaction: store.transaction.bind(store), script: store.script.bind(store), close: async () => undefined };
    },
    drop: () => store.close(),
  };
});

storeConformance('PostgreSQL', async (ctx) => {
  await requirePostgres(ctx);
  const schema = `stagemesh_test_${process.pid}_${randomUUID().slice(0, 8)}`;
  const opened: PostgresStore[] = [];
  const open = async () => {
    const store = await PostgresStore.open({ connectionString: POSTGRES_URL, schema });
    opened.push(store);
    return store;
  };
  const store = await open();
  return {
    store,
    reopen: open,
    drop: async () => {
      await Promise.allSettled(opened.map((s) => s.close()));
      await queryTestPostgres(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  };
});
