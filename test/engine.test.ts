import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { callUnary } from '../services/common/grpc-client.js';
import { FIELD_PATH_METADATA } from '../services/common/grpc-status.js';
import { RunState, StageState, type SubscribeResponse } from '../services/common/proto.js';
import { dispatchWindow } from '../services/scheduler/scheduler.js';
import { inline, runToEnd, startTestMesh, waitForRun, type TestMesh } from './support/mesh.js';
import { repoRoot } from './support/tools.js';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process.js';

const stageState = (s: StageState) => StageState[s].replace('STAGE_STATE_', '');

/** Processes whose command line contains `marker`. */
function processesWith(marker: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', marker], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

describe('engine - run semantics on the embedded mesh', function () {
  let t: TestMesh;
  const scratch = mkdtempSync(join(tmpdir(), 'stagemesh-engine-'));

  before(async () => {
    t = await startTestMesh({ workerCapacity: 8 });
  });

  after(async () => {
    await t?.destroy();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('runs shell, node-test, mocha, pytest and http stages in one run with the exact counts of each runner', async function () {
    const { frameworks } = await callUnary(t.clients.coordinator.listFrameworks.bind(t.clients.coordinator), {});
    const offered = frameworks.map((f) => f.framework);
    if (!offered.includes('pytest')) {
      if (process.env.CI === 'true') assert.fail('pytest is required in CI (.ci/run installs python3-pytest)');
      console.log('      skipped: pytest is not installed here (apt-get install python3-pytest)');
      this.skip();
    }
    const document = readFileSync(join(repoRoot, 'examples', 'multi-framework.yaml'), 'utf8');
    const run = await runToEnd(t.clients, inline(document, { inputs: { health_url: `${t.httpUrl}/healthz` } }), '60s');
    const byId = Object.fromEntries(run.stages.map((s) => [s.stageId, s]));
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED, JSON.stringify(run.stages.map((s) => [s.stageId, stageState(s.state), s.attempts.at(-1)?.evidence?.error])));
    const tests = (id: string) => {
      const { total, passed, failed, skipped } = byId[id]!.attempts.at(-1)!.evidence!.tests!;
      return { total, passed, failed, skipped };
    };
    assert.deepEqual(tests('unit'), { total: 4, passed: 3, failed: 0, skipped: 1 });
    assert.deepEqual(tests('api'), { total: 3, passed: 2, failed: 0, skipped: 1 });
    assert.deepEqual(tests('py[fast]'), { total: 2, passed: 2, failed: 0, skipped: 0 });
    assert.deepEqual(tests('py[full]'), { total: 3, passed: 2, failed: 0, skipped: 1 });
    assert.equal(byId.smoke!.attempts[0]!.evidence!.httpStatus, 200);
    assert.deepEqual(byId.build!.attempts[0]!.evidence!.artifacts, [{ path: 'dist/app.txt', sizeBytes: 10 }]);
    assert.match(byId.report!.attempts[0]!.evidence!.logTail, /released 1\.4\.0/);
    // The DAG let the four test stages run side by side: each started before any of them ended.
    const starts = ['unit', 'api', 'py[fast]', 'py[full]'].map((id) => byId[id]!.attempts[0]!.startedAt!.getTime());
    const ends = ['unit', 'api', 'py[fast]', 'py[full]'].map((id) => byId[id]!.attempts[0]!.finishedAt!.getTime());
    assert.ok(Math.max(...starts) < Math.min(...ends), 'the test stages ran one after another');
  });

  it('names the failed tests of a test stage, from the runner report', async () => {
    const file = join(scratch, 'failing.test.mjs');
    writeFileSync(file, "import { test } from 'node:test';\nimport assert from 'node:assert';\ntest('works', () => {});\ntest('breaks', () => assert.equal(1, 2, 'one is not two'));\n");
    const run = await runToEnd(t.clients, inline(`name: red\nstages:\n  - { id: unit, framework: node-test, run: { files: ['${file}'] } }`));
    assert.equal(run.state, RunState.RUN_STATE_FAILED);
    const evidence = run.stages[0]!.attempts[0]!.evidence!;
    assert.deepEqual({ ...evidence.tests, failures: undefined }, { total: 2, passed: 1, failed: 1, skipped: 0, failures: undefined });
    assert.equal(evidence.tests!.failures[0]!.name, 'breaks');
    assert.match(evidence.tests!.failures[0]!.message, /one is not two/);
  });

  it('leaves no process of a cancelled stage alive 2 s later', async () => {
    const marker = `stagemesh-cancel-${process.pid}-${Date.now()}`;
    const { run } = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline(`name: long\nstages:\n  - { id: nap, framework: shell, run: { command: 'sleep 60; echo ${marker}' } }`));
    const deadline = Date.now() + 10_000;
    while (processesWith(marker).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(processesWith(marker).length > 0, 'the stage never started');
    await callUnary(t.clients.scheduler.cancelRun.bind(t.clients.scheduler), { runId: run!.runId, reason: 'test' });
    await new Promise((r) => setTimeout(r, 2_000));
    assert.deepEqual(processesWith(marker), []);
    const cancelled = await waitForRun(t.clients, run!.runId, (r) => r.state === RunState.RUN_STATE_CANCELLED);
    assert.equal(cancelled.stages[0]!.state, StageState.STAGE_STATE_CANCELLED);
  });

  it('retries a stage that fails twice and then passes, with growing backoff', async () => {
    const run = await runToEnd(
      t.clients,
      inline(`name: flaky\nstages:\n  - id: flaky\n    framework: shell\n    retry: { max_attempts: 3, backoff: 200ms }\n    run: { command: 'test "$STAGEMESH_ATTEMPT" -ge 3' }`),
    );
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED);
    const attempts = run.stages[0]!.attempts;
    assert.deepEqual(attempts.map((a) => stageState(a.state)), ['FAILED', 'FAILED', 'SUCCEEDED']);
    const gap = (i: number) => attempts[i]!.startedAt!.getTime() - attempts[i - 1]!.finishedAt!.getTime();
    assert.ok(gap(1) >= 90 && gap(2) >= 190, `backoff gaps ${gap(1)} ms, ${gap(2)} ms`);
    assert.ok(gap(2) > gap(1), `backoff did not grow: ${gap(1)} ms then ${gap(2)} ms`);
  });

  it('expands a matrix into stages that are each visible and retried on their own', async () => {
    const run = await runToEnd(
      t.clients,
      inline(`
name: matrix
stages:
  - id: test
    framework: shell
    matrix: { os: [linux, mac], node: [20, 22] }
    retry: { max_attempts: 2, backoff: 10ms }
    run: { command: 'echo "\${{ matrix.os }}-\${{ matrix.node }}"; [ "\${{ matrix.os }}-\${{ matrix.node }}" != mac-22 ] || [ "$STAGEMESH_ATTEMPT" = 2 ]' }
  - { id: done, framework: noop, needs: [test] }
`),
    );
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED);
    assert.deepEqual(run.stages.map((s) => [s.stageId, s.attempts.length]), [
      ['test[linux,20]', 1],
      ['test[linux,22]', 1],
      ['test[mac,20]', 1],
      ['test[mac,22]', 2],
      ['done', 1],
    ]);
    assert.deepEqual(run.stages[4]!.needs, ['test[linux,20]', 'test[linux,22]', 'test[mac,20]', 'test[mac,22]']);
    assert.match(run.stages[3]!.attempts[1]!.evidence!.logTail, /mac-22/);
  });

  it('keeps a pipeline within its concurrency limit across its runs', async () => {
    const lock = join(scratch, 'lock');
    const stage = (id: string) => `  - { id: ${id}, framework: shell, run: { command: 'mkdir ${lock} && sleep 0.2 && rmdir ${lock}' } }`;
    const document = `name: limited\nconcurrency: { max: 1 }\nstages:\n${['a', 'b', 'c'].map(stage).join('\n')}`;
    const runs = await Promise.all([runToEnd(t.clients, inline(document)), runToEnd(t.clients, inline(document))]);
    for (const run of runs) assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED, 'two stages of the pipeline overlapped');
  });

  it('starts the stages of a concurrency-limited run as room opens in its window, each once', async () => {
    const count = 100;
    const window = dispatchWindow({ concurrency: { max: 1, frameworks: {} } });
    assert.ok(window < count, 'the run must hold stages back for this test to mean anything');
    const stages = Array.from({ length: count }, (_, i) => `  - { id: s${i}, framework: sleep, run: { duration: 5ms } }`);
    const document = `name: windowed\nconcurrency: { max: 1 }\nstages:\n${stages.join('\n')}`;
    const { run: submitted } = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline(document));
    const started = submitted!.stages.filter((s) => s.attempts.length > 0);
    // The run as its first step left it: the window's stages queued with an attempt, the rest pending without one.
    assert.equal(started.length, window);
    assert.ok(started.every((s) => s.state === StageState.STAGE_STATE_QUEUED));
    assert.ok(submitted!.stages.slice(window).every((s) => s.state === StageState.STAGE_STATE_PENDING && s.attempts.length === 0));
    let samples = 0;
    const run = await waitForRun(t.clients, submitted!.runId, (r) => {
      const open = r.stages.filter((s) => s.state === StageState.STAGE_STATE_QUEUED || s.state === StageState.STAGE_STATE_RUNNING);
      assert.ok(open.length <= window, `${open.length} stages in flight, over the window of ${window}`);
      samples++;
      return r.state !== RunState.RUN_STATE_RUNNING;
    }, 30_000);
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED);
    assert.ok(samples > 1, 'the run ended before it could be looked at while running');
    assert.deepEqual(run.stages.map((s) => [s.stageId, s.attempts.length]), stages.map((_, i) => [`s${i}`, 1]));
  });

  it('refuses bad references and an empty matrix with INVALID_ARGUMENT and the field path', async () => {
    const cases: [string, string, RegExp][] = [
      ["name: x\nstages:\n  - { id: a, framework: shell, run: { command: 'echo ${{ inputs.nope }}' } }", 'stages[0].run.command', /input the pipeline does not declare/],
      ["name: x\nstages:\n  - { id: a, framework: noop }\n  - { id: b, framework: shell, run: { command: 'echo ${{ stages.a.outputs.v }}' } }", 'stages[1].run.command', /does not run before/],
      ["name: x\nstages:\n  - { id: a, framework: noop }\n  - { id: b, framework: shell, needs: [a], run: { command: 'echo ${{ stages.a.outputs.v }}' } }", 'stages[1].run.command', /declares no output "v"/],
      ["name: x\nstages:\n  - { id: a, framework: shell, run: { command: 'echo ${{ matrix.os }}' } }", 'stages[0].run.command', /no matrix key/],
      ["name: x\nstages:\n  - { id: a, framework: shell, run: { command: 'echo ${{ env.HOME }}' } }", 'stages[0].run.command', /not an expression/],
      ['name: x\nstages:\n  - { id: a, framework: noop, matrix: { os: [] } }', 'stages[0].matrix.os', /fewer than 1/],
      ['name: x\nstages:\n  - { id: a, framework: noop, matrix: {} }', 'stages[0].matrix', /fewer than 1/],
      [`name: x\nstages:\n  - { id: a, framework: noop, matrix: { a: [${Array.from({ length: 40 }, (_, i) => i)}], b: [${Array.from({ length: 40 }, (_, i) => i)}] } }`, 'stages[0].matrix', /over the limit/],
    ];
    for (const [document, fieldPath, message] of cases) {
      await assert.rejects(callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline(document)), (err: ServiceError) => {
        assert.equal(err.code, status.INVALID_ARGUMENT, document);
        assert.equal(err.metadata.get(FIELD_PATH_METADATA)[0], fieldPath, document);
        assert.match(err.details, message);
        return true;
      });
    }
    const { runs } = await callUnary(t.clients.scheduler.listRuns.bind(t.clients.scheduler), { pageSize: 100, pageToken: '', pipelineName: 'x', state: 0 });
    assert.deepEqual(runs, []);
  });
});

describe('engine - workers as separate processes', function () {
  let t: TestMesh;
  const workers: WorkerProcess[] = [];

  before(async () => {
    t = await startTestMesh({ leaseTtlMs: 1_500 }, { worker: false });
  });

  after(async () => {
    await Promise.allSettled(workers.map((w) => w.stop()));
    await t?.destroy();
  });

  it('spreads one run over several worker nodes', async () => {
    workers.push(await startWorkerProcess(t.address, 'spread-a', ['--frameworks', 'shell', '--capacity', '1']));
    workers.push(await startWorkerProcess(t.address, 'spread-b', ['--frameworks', 'shell', '--capacity', '1']));
    const stages = ['a', 'b', 'c', 'd'].map((id) => `  - { id: ${id}, framework: shell, run: { command: 'sleep 0.3' } }`).join('\n');
    const run = await runToEnd(t.clients, inline(`name: spread\nstages:\n${stages}`));
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED);
    assert.deepEqual([...new Set(run.stages.map((s) => s.attempts[0]!.nodeId))].sort(), ['spread-a', 'spread-b']);
    await Promise.all(workers.splice(0).map((w) => w.stop()));
  });

  it('retries the stage of a worker killed with SIGKILL on another worker, recording its outcome once', async () => {
    const doomed = await startWorkerProcess(t.address, 'doomed', ['--frameworks', 'shell', '--capacity', '1']);
    workers.push(doomed);
    const { run } = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline("name: survive\nstages:\n  - { id: work, framework: shell, run: { command: 'sleep 1; echo done' } }"));
    await waitForRun(t.clients, run!.runId, () => true);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { nodes } = await callUnary(t.clients.coordinator.listNodes.bind(t.clients.coordinator), {});
      if (nodes.find((n) => n.nodeId === 'doomed')?.running === 1) break;
      if (Date.now() > deadline) assert.fail('the doomed worker never took the stage');
      await new Promise((r) => setTimeout(r, 25));
    }
    process.kill(-doomed.child.pid!, 'SIGKILL');
    workers.push(await startWorkerProcess(t.address, 'rescuer', ['--frameworks', 'shell', '--capacity', '1']));
    const done = await waitForRun(t.clients, run!.runId, (r) => r.state !== RunState.RUN_STATE_RUNNING, 20_000);
    assert.equal(done.state, RunState.RUN_STATE_SUCCEEDED);
    const attempts = done.stages[0]!.attempts;
    assert.deepEqual(attempts.map((a) => [a.nodeId, stageState(a.state)]), [
      ['doomed', 'FAILED'],
      ['rescuer', 'SUCCEEDED'],
    ]);
    assert.match(attempts[0]!.evidence!.error, /^lost: node doomed/);
    const succeeded = await new Promise<number>((resolve, reject) => {
      let count = 0;
      const stream = t.clients.eventBus.subscribe({ subjects: ['stage.succeeded', 'run.finished'], filter: { run_id: run!.runId }, fromSequence: 1, consumer: '', ackTimeout: '', maxDeliver: 0 });
      stream.on('data', (m: SubscribeResponse) => {
        if (m.event!.type === 'stage.succeeded') count++;
        if (m.event!.type === 'run.finished') {
          stream.cancel();
          resolve(count);
        }
      });
      stream.on('error', (err: ServiceError) => (err.code === status.CANCELLED ? undefined : reject(err)));
    });
    assert.equal(succeeded, 1);
  });
});
