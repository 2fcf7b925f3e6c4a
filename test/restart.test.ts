import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callUnary } from '../services/common/grpc-client.js';
import { GetRunRequest, RunState, StageState } from '../services/common/proto.js';
import { dispatchWindow } from '../services/scheduler/scheduler.js';
import { inline, runToEnd, startTestMesh, waitForRun, type TestMesh } from './support/mesh.js';

describe('mesh - restart and graceful shutdown', function () {
  const dataDir = mkdtempSync(join(tmpdir(), 'stagemesh-restart-'));
  const meshes: TestMesh[] = [];
  const start = async (shutdownTimeoutMs = 5_000) => {
    const t = await startTestMesh({ dataDir, shutdownTimeoutMs });
    meshes.push(t);
    return t;
  };

  after(async () => {
    await Promise.allSettled(meshes.map((t) => t.stop()));
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps registered pipelines and finished runs across a restart', async () => {
    const first = await start();
    await callUnary(first.clients.scheduler.registerPipeline.bind(first.clients.scheduler), { document: 'name: kept\nstages:\n  - { id: a, framework: shell, run: { command: echo kept } }' });
    const run = await runToEnd(first.clients, inline('', { document: undefined, pipelineRef: 'kept' }));
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED);
    await first.stop();

    const second = await start();
    const { pipeline } = await callUnary(second.clients.scheduler.getPipeline.bind(second.clients.scheduler), { name: 'kept', version: '' });
    assert.equal(pipeline!.version, '1');
    const { run: again } = await callUnary(second.clients.scheduler.getRun.bind(second.clients.scheduler), GetRunRequest.fromPartial({ runId: run.runId }));
    assert.equal(again!.state, RunState.RUN_STATE_SUCCEEDED);
    assert.match(again!.stages[0]!.attempts[0]!.evidence!.logTail, /kept/);
    await second.stop();
  });

  it('lets a running stage finish and records it before stopping', async () => {
    const t = await start();
    const { run } = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline('name: drained\nstages:\n  - { id: s, framework: shell, run: { command: sleep 0.5 } }'));
    await waitForRun(t.clients, run!.runId, (r) => r.stages[0]!.attempts.length > 0);
    await new Promise((r) => setTimeout(r, 100)); // the worker has the task
    await t.stop();
    const after = await start();
    const { run: stored } = await callUnary(after.clients.scheduler.getRun.bind(after.clients.scheduler), GetRunRequest.fromPartial({ runId: run!.runId }));
    assert.equal(stored!.state, RunState.RUN_STATE_SUCCEEDED);
    assert.equal(stored!.stages[0]!.attempts.length, 1);
    await after.stop();
  });

  it('keeps the deadline of a run resumed after a restart', async () => {
    const t = await start(200);
    const { run } = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline('name: due\nstages:\n  - { id: s, framework: shell, run: { command: sleep 30 } }', { deadline: '3s' }));
    await waitForRun(t.clients, run!.runId, (r) => r.stages[0]!.attempts.length > 0);
    await t.stop();
    const after = await start();
    const done = await waitForRun(after.clients, run!.runId, (r) => r.state !== RunState.RUN_STATE_RUNNING, 15_000);
    assert.equal(done.state, RunState.RUN_STATE_FAILED);
    assert.match(done.reason, /deadline .* exceeded/);
    await after.stop();
  });

  it('resumes a run whose stage was interrupted by a shutdown, running the stage again', async () => {
    const t = await start(200);
    const { run } = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline('name: resumed\nstages:\n  - { id: s, framework: shell, run: { command: sleep 2 } }\n  - { id: t, framework: noop, needs: [s] }'));
    await waitForRun(t.clients, run!.runId, (r) => r.stages[0]!.attempts.length > 0);
    await new Promise((r) => setTimeout(r, 100));
    await t.stop();
    const after = await start();
    const done = await waitForRun(after.clients, run!.runId, (r) => r.state !== RunState.RUN_STATE_RUNNING, 15_000);
    assert.equal(done.state, RunState.RUN_STATE_SUCCEEDED);
    const attempts = done.stages[0]!.attempts;
    assert.equal(attempts.length, 2);
    assert.equal(attempts[0]!.state, StageState.STAGE_STATE_CANCELLED);
    assert.match(attempts[0]!.evidence!.error, /interrupted/);
    assert.equal(attempts[1]!.state, StageState.STAGE_STATE_SUCCEEDED);
    await after.stop();
  });

  it('resumes a concurrency-limited run with stages it held back, starting each within its window', async () => {
    const window = dispatchWindow({ concurrency: { max: 1, frameworks: {} } });
    const count = window + 5;
    // The first stage outlasts the stop, so no stage ends and none of those held back starts before it.
    const stages = Array.from({ length: count }, (_, i) => `  - { id: s${i}, framework: sleep, run: { duration: ${i === 0 ? '1s' : '20ms'} } }`);
    const t = await start(200);
    const { run } = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline(`name: held\nconcurrency: { max: 1 }\nstages:\n${stages.join('\n')}`));
    await new Promise((r) => setTimeout(r, 300)); // the worker runs the first stage
    await t.stop();
    const after = await start();
    const inFlight = (r: typeof run) => r!.stages.filter((s) => s.state === StageState.STAGE_STATE_QUEUED || s.state === StageState.STAGE_STATE_RUNNING).length;
    const done = await waitForRun(after.clients, run!.runId, (r) => {
      assert.ok(inFlight(r) <= window, `${inFlight(r)} stages in flight, over the window of ${window}`);
      return r.state !== RunState.RUN_STATE_RUNNING;
    }, 20_000);
    assert.equal(done.state, RunState.RUN_STATE_SUCCEEDED);
    for (const stage of done.stages) assert.equal(stage.attempts.filter((a) => a.state === StageState.STAGE_STATE_SUCCEEDED).length, 1, stage.stageId);
    // The stages started before the stop were interrupted and ran again; those held back had no attempt to interrupt.
    assert.deepEqual(done.stages.map((s) => s.attempts.length), stages.map((_, i) => (i < window ? 2 : 1)));
    await after.stop();
  });
});
