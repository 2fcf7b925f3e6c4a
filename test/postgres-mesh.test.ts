import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { callUnary } from '../services/common/grpc-client.js';
import { GetRunRequest, RunState } from '../services/common/proto.js';
import { inline, runToEnd, startTestMesh, type TestMesh } from './support/mesh.js';
import { queryTestPostgres, requirePostgres, TEST_POSTGRES_URL } from './support/tools.js';

const POSTGRES_URL = TEST_POSTGRES_URL;

describe('mesh - state in PostgreSQL (STAGEMESH_DATABASE_URL)', function () {
  const schema = `stagemesh_mesh_${process.pid}_${randomUUID().slice(0, 8)}`;
  const meshes: TestMesh[] = [];

  before(async function () {
    await requirePostgres(this);
  });

  after(async () => {
    await Promise.allSettled(meshes.map((t) => t.destroy()));
    await queryTestPostgres(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  });

  it('runs a pipeline with its state in PostgreSQL and finds it again after a restart', async () => {
    const first = await startTestMesh({ databaseUrl: POSTGRES_URL, databaseSchema: schema });
    meshes.push(first);
    const run = await runToEnd(first.clients, inline("name: in-postgres\nstages:\n  - { id: a, framework: shell, run: { command: echo stored } }\n  - { id: b, framework: noop, needs: [a] }"));
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED);
    await first.stop();

    const second = await startTestMesh({ databaseUrl: POSTGRES_URL, databaseSchema: schema });
    meshes.push(second);
    const { run: again } = await callUnary(second.clients.scheduler.getRun.bind(second.clients.scheduler), GetRunRequest.fromPartial({ runId: run.runId }));
    assert.equal(again!.state, RunState.RUN_STATE_SUCCEEDED);
    assert.match(again!.stages[0]!.attempts[0]!.evidence!.logTail, /stored/);
    assert.deepEqual(await queryTestPostgres(`SELECT state FROM ${schema}.runs WHERE run_id = $1`, [run.runId]), [{ state: 'SUCCEEDED' }]);
  });
});
