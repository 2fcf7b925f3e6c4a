import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createLogger } from '../services/common/logger.js';
import { PostgresStore } from '../services/common/postgres-store.js';
import { OutcomeStatus, SubmitRunRequest, type Outcome, type Task } from '../services/common/proto.js';
import { Compliance } from '../services/compliance/compliance-service.js';
import { isFencedError, RunOwnership } from '../services/scheduler/run-ownership.js';
import { RunStore } from '../services/scheduler/run-store.js';
import { Scheduler } from '../services/scheduler/scheduler.js';
import { queryTestPostgres, requirePostgres, TEST_POSTGRES_URL, waitUntil } from './support/tools.js';

const logger = createLogger({ level: 'silent' });
const compliance = new Compliance(logger);

const CHAIN = 'name: owned\nstages:\n  - { id: a, framework: noop }\n  - { id: b, framework: noop, needs: [a] }\n  - { id: c, framework: noop, needs: [b] }';

function succeeded(task: Task): Outcome {
  return { attemptId: task.attemptId, runId: task.runId, stageId: task.stageId, status: OutcomeStatus.OUTCOME_STATUS_SUCCEEDED, outputs: {}, nodeId: 'n1', traceparent: '', schedulerId: task.schedulerId, evidence: undefined };
}

/** A scheduler replica as `stagemesh serve scheduler` wires it, with the tasks it sends kept for the test. */
async function replica(store: PostgresStore, id: string) {
  const ownership = new RunOwnership(store, id, 60_000);
  await ownership.join();
  const tasks: Task[] = [];
  let fenced = 0;
  const scheduler = new Scheduler({
    logger,
    runs: new RunStore(store, { owner: id }),
    instanceId: id,
    claimRuns: (claim) => ownership.claim(claim),
    onFenced: () => fenced++,
    validate: async (pipeline) => compliance.validate({ pipeline, policy: undefined }),
    enqueue: async (batch) => void tasks.push(...batch),
    cancelTasks: async () => undefined,
  });
  return { id, ownership, scheduler, tasks, fenced: () => fenced };
}

describe('scheduler replicas over one PostgreSQL (run ownership)', function () {
  this.timeout(60_000);
  const schema = `stagemesh_own_${process.pid}_${randomUUID().slice(0, 8)}`;
  const stores: PostgresStore[] = [];
  const stops: (() => Promise<void>)[] = [];

  before(async function () {
    await requirePostgres(this);
  });

  after(async () => {
    for (const stop of stops) await stop().catch(() => undefined);
    for (const store of stores) await store.close();
    await queryTestPostgres(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  });

  async function open(): Promise<PostgresStore> {
    const store = await PostgresStore.open({ connectionString: TEST_POSTGRES_URL, schema });
    stores.push(store);
    return store;
  }

  it('hands the runs of a replica whose lease lapsed to exactly one peer, and fences the old owner out', async () => {
    const a = await replica(await open(), `sched-a-${randomUUID().slice(0, 6)}`);
    const b = await replica(await open(), `sched-b-${randomUUID().slice(0, 6)}`);
    const c = await replica(await open(), `sched-c-${randomUUID().slice(0, 6)}`);
    stops.push(() => a.scheduler.stop(), () => b.scheduler.stop(), () => c.scheduler.stop());

    const runIds: string[] = [];
    for (let i = 0; i < 20; i++) runIds.push(await a.scheduler.start(SubmitRunRequest.fromPartial({ document: CHAIN })));
    // Tasks leave in a batch after each commit: wait for all 20 first stages, then end them on a.
    await waitUntil('the first stage of every run to be dispatched', async () => (a.tasks.length === 20 ? true : undefined), { timeoutMs: 5_000, intervalMs: 5 });
    await a.scheduler.applyOutcomes(a.tasks.splice(0).map(succeeded));
    await waitUntil('the second stage of every run to be dispatched', async () => (a.tasks.length === 20 ? true : undefined), { timeoutMs: 5_000, intervalMs: 5 });
    const owners = await queryTestPostgres<{ owner: string; n: string }>(`SELECT owner, count(*) AS n FROM ${schema}.runs GROUP BY owner`);
    assert.deepEqual(owners, [{ owner: a.id, n: '20' }]);
    // Its live peers take nothing of a live replica.
    assert.deepEqual(await b.scheduler.adoptOrphans(), 0);

    // a stops renewing (a crash, a partition): its lease lapses.
    await queryTestPostgres(`UPDATE ${schema}.scheduler_instances SET expires_at = now() - interval '1 second' WHERE instance_id = $1`, [a.id]);
    const [takenByB, takenByC] = await Promise.all([b.scheduler.adoptOrphans(), c.scheduler.adoptOrphans()]);
    assert.equal(takenByB + takenByC, 20, 'every run goes to one peer, none to both');
    assert.deepEqual(await queryTestPostgres(`SELECT count(*)::int AS n FROM ${schema}.scheduler_instances WHERE instance_id = $1`, [a.id]), [{ n: 0 }]);

    // The old owner still holds its runs in memory; its next step is refused and it forgets them.
    const late = a.tasks.splice(0);
    assert.equal(late.length, 20);
    await assert.rejects(a.scheduler.applyOutcomes(late.map(succeeded)), (err) => isFencedError(err));
    assert.equal(a.fenced(), 1);
    assert.equal(runIds.filter((id) => a.scheduler.isActive(id)).length, 0);

    // The new owners run what was left: stage b of every run (again: a's outcomes were refused), then c.
    const ended = new Map<string, number>();
    await waitUntil(
      'the new owners to finish every run',
      async () => {
        for (const peer of [b, c]) {
          const batch = peer.tasks.splice(0);
          assert.ok(batch.every((t) => t.schedulerId === peer.id));
          for (const t of batch) ended.set(t.stageId, (ended.get(t.stageId) ?? 0) + 1);
          if (batch.length) await peer.scheduler.applyOutcomes(batch.map(succeeded));
        }
        return runIds.every((id) => !b.scheduler.isActive(id) && !c.scheduler.isActive(id)) ? true : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 5 },
    );
    assert.deepEqual(Object.fromEntries(ended), { b: 20, c: 20 });
    const states = await queryTestPostgres<{ state: string; n: number }>(`SELECT state, count(*)::int AS n FROM ${schema}.runs GROUP BY state`);
    assert.deepEqual(states, [{ state: 'SUCCEEDED', n: 20 }]);
    // Each stage ended once: the late outcomes of a, refused, left no trace.
    const stages = await queryTestPostgres<{ stage_id: string; n: number; attempts: number }>(
      `SELECT stage_id, count(*)::int AS n, sum((SELECT count(*) FROM ${schema}.attempts x WHERE x.run_id = s.run_id AND x.stage_id = s.stage_id AND x.state = 'SUCCEEDED'))::int AS attempts
         FROM ${schema}.stage_runs s WHERE s.state = 'SUCCEEDED' AND (s.final_attempt->>'state') = 'SUCCEEDED' GROUP BY stage_id ORDER BY stage_id`,
    );
    assert.deepEqual(stages, [
      { stage_id: 'a', n: 20, attempts: 0 },
      { stage_id: 'b', n: 20, attempts: 0 },
      { stage_id: 'c', n: 20, attempts: 0 },
    ]);

    // What the compliance auditor asks first: each run's pipeline, in one statement.
    const pipelines = await new RunStore(stores[0]!).pipelinesOfRuns([runIds[0]!, runIds[1]!, 'no-such-run']);
    assert.deepEqual([...pipelines].map(([id, p]) => [id, p.name, p.stages.length]).sort(), [[runIds[0], 'owned', 3], [runIds[1], 'owned', 3]].sort());

    // a joins again and takes runs again: nothing is left to take.
    await a.ownership.join();
    assert.equal(await a.scheduler.recover(), 0);
  });

  it('renews a lapsed lease nobody took, and reports a taken one as lost', async () => {
    const store = await open();
    const ownership = new RunOwnership(store, `sched-r-${randomUUID().slice(0, 6)}`, 1_000);
    await ownership.join();
    await queryTestPostgres(`UPDATE ${schema}.scheduler_instances SET expires_at = now() - interval '1 second' WHERE instance_id = $1`, [ownership.instanceId]);
    assert.equal(await ownership.renew(), true);
    await queryTestPostgres(`DELETE FROM ${schema}.scheduler_instances WHERE instance_id = $1`, [ownership.instanceId]);
    assert.equal(await ownership.renew(), false);
    await ownership.join();
    await ownership.leave();
    assert.equal(await ownership.renew(), false);
  });
});
