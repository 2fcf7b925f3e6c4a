import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { credentials, loadPackageDefinition, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { callUnary } from '../services/common/grpc-client.js';
import { GetRunRequest, GroupBy, RunAndWaitRequest, RunState, RunView, SERVICE_NAMES, StageState, type Event, type SubscribeResponse } from '../services/common/proto.js';
import { inline, runToEnd, startTestMesh, waitForRun, type TestMesh } from './support/mesh.js';
import { requireTool } from './support/tools.js';

const hello = `
name: hello
inputs: { who: world }
stages:
  - id: greet
    framework: shell
    run: { command: 'echo "hello \${{ inputs.who }}"; echo "version=1.2.3" >> "$STAGEMESH_OUTPUT"' }
    outputs: [version]
  - id: build
    framework: shell
    needs: [greet]
    run: { command: 'test "\${{ stages.greet.outputs.version }}" = 1.2.3 && echo built' }
  - id: report
    framework: shell
    needs: [build]
    when: always
    run: { command: echo done }
`;

function grpcCode(err: unknown): number | undefined {
  return (err as ServiceError).code;
}

describe('mesh - embedded profile over gRPC', function () {
  let t: TestMesh;

  before(async () => {
    t = await startTestMesh();
  });

  after(async () => {
    await t?.destroy();
  });

  it('answers SERVING on grpc.health.v1.Health for each of the five services', async () => {
    const health = loadPackageDefinition(loadSync(healthProtoPath, { enums: String })) as unknown as {
      grpc: { health: { v1: { Health: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => { check: Function; close(): void } } } };
    };
    const client = new health.grpc.health.v1.Health(t.address, credentials.createInsecure());
    try {
      for (const service of [...Object.values(SERVICE_NAMES), '']) {
        const response = await new Promise<{ status: string }>((resolve, reject) =>
          client.check({ service }, new Metadata(), (err: Error | null, res: { status: string }) => (err ? reject(err) : resolve(res))),
        );
        assert.equal(response.status, 'SERVING', service);
      }
    } finally {
      client.close();
    }
  });

  it('lists and describes all five services through server reflection (grpcurl)', async function () {
    const grpcurl = requireTool('grpcurl', this);
    // Asynchronous: the mesh answers from this very process.
    const run = async (...args: string[]) => (await promisify(execFile)(grpcurl, ['-plaintext', ...args], { encoding: 'utf8' })).stdout;
    const listed = (await run(t.address, 'list')).split('\n');
    for (const name of Object.values(SERVICE_NAMES)) assert.ok(listed.includes(name), `${name} missing from:\n${listed.join('\n')}`);
    assert.ok(listed.includes('grpc.health.v1.Health'));
    const health = await run('-d', '{"service":"stagemesh.v1.Scheduler"}', t.address, 'grpc.health.v1.Health/Check');
    assert.match(health, /"status": "SERVING"/);
    const described = await run(t.address, 'describe', 'stagemesh.v1.Scheduler');
    assert.match(described, /rpc RunAndWait/);
    assert.match(described, /rpc WatchRun \( \.stagemesh\.v1\.WatchRunRequest \) returns \( stream \.stagemesh\.v1\.WatchRunResponse \)/);
  });

  it('runs a three-stage pipeline end to end, passing inputs and outputs between stages', async () => {
    const run = await runToEnd(t.clients, inline(hello));
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED, JSON.stringify(run.stages.map((s) => s.attempts.at(-1)?.evidence)));
    assert.deepEqual(run.stages.map((s) => [s.stageId, s.state]), [
      ['greet', StageState.STAGE_STATE_SUCCEEDED],
      ['build', StageState.STAGE_STATE_SUCCEEDED],
      ['report', StageState.STAGE_STATE_SUCCEEDED],
    ]);
    assert.deepEqual(run.stages[0]!.outputs, { version: '1.2.3' });
    assert.match(run.stages[0]!.attempts[0]!.evidence!.logTail, /hello world/);
    assert.equal(run.stages[0]!.attempts[0]!.nodeId, 'embedded-worker');

    const { run: stored } = await callUnary(t.clients.scheduler.getRun.bind(t.clients.scheduler), GetRunRequest.fromPartial({ runId: run.runId }));
    assert.equal(stored!.state, RunState.RUN_STATE_SUCCEEDED);
    assert.ok(stored!.finishedAt);
  });

  it('publishes the lifecycle of a run to the event bus and counts it in metrics', async () => {
    const run = await runToEnd(t.clients, inline(hello, { inputs: { who: 'bus' } }));
    const events = await new Promise<Event[]>((resolve, reject) => {
      const seen: Event[] = [];
      const stream = t.clients.eventBus.subscribe({ subjects: ['run.*', 'stage.*'], filter: { run_id: run.runId }, fromSequence: 1, consumer: '', ackTimeout: '', maxDeliver: 0 });
      stream.on('data', (m: SubscribeResponse) => {
        seen.push(m.event!);
        if (m.event!.type === 'run.finished') {
          stream.cancel();
          resolve(seen);
        }
      });
      stream.on('error', (err: ServiceError) => (err.code === status.CANCELLED ? undefined : reject(err)));
    });
    assert.deepEqual(events.map((e) => e.type), ['run.submitted', 'stage.ready', 'stage.succeeded', 'stage.ready', 'stage.succeeded', 'stage.ready', 'stage.succeeded', 'run.finished']);
    // Each event carries the time of the scheduler's step that made it happen: what the store recorded for it.
    for (const event of events.filter((e) => e.type === 'stage.succeeded')) {
      const attempt = run.stages.find((s) => s.stageId === event.attributes.stage_id)!.attempts[0]!;
      assert.equal(event.time!.getTime(), attempt.finishedAt!.getTime(), event.attributes.stage_id);
    }
    assert.equal(events.at(-1)!.time!.getTime(), run.finishedAt!.getTime());
    const times = events.map((e) => e.time!.getTime());
    assert.deepEqual(times, [...times].sort((a, b) => a - b), 'events of one run are in the order of their times');
    const info = await callUnary(t.clients.eventBus.getTopicInfo.bind(t.clients.eventBus), { subject: 'run.finished' });
    assert.ok(info.count >= 1);
    // Metrics consume events asynchronously: poll briefly until this run's stages are counted.
    const deadline = Date.now() + 5000;
    let shell = undefined;
    while (Date.now() < deadline) {
      const { series } = await callUnary(t.clients.metrics.query.bind(t.clients.metrics), { window: '5m', groupBy: GroupBy.GROUP_BY_FRAMEWORK });
      shell = series.find((s) => s.group === 'shell');
      if (shell && shell.stagesSucceeded >= 6) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(shell && shell.stagesSucceeded >= 6, `metrics saw ${shell?.stagesSucceeded} shell stages`);
    assert.ok(shell.execution!.count >= 6);
  });

  it('fails the run when a stage fails, skipping its dependents but running always stages', async () => {
    const run = await runToEnd(
      t.clients,
      inline(`
name: broken
stages:
  - { id: a, framework: shell, run: { command: 'echo boom >&2; exit 4' } }
  - { id: b, framework: noop, needs: [a] }
  - { id: c, framework: shell, needs: [b], when: always, run: { command: 'true' } }
  - { id: d, framework: noop, needs: [a], when: on_failure }
`),
    );
    assert.equal(run.state, RunState.RUN_STATE_FAILED);
    assert.deepEqual(run.stages.map((s) => StageState[s.state]), ['STAGE_STATE_FAILED', 'STAGE_STATE_SKIPPED', 'STAGE_STATE_SUCCEEDED', 'STAGE_STATE_SUCCEEDED']);
    assert.equal(run.stages[0]!.attempts[0]!.evidence!.exitCode, 4);
    assert.match(run.stages[0]!.attempts[0]!.evidence!.logTail, /boom/);
    assert.match(run.reason, /stage a failed/);
  });

  it('retries a failed stage with backoff up to max_attempts', async () => {
    const run = await runToEnd(
      t.clients,
      inline(`
name: flaky
stages:
  - id: flaky
    framework: shell
    retry: { max_attempts: 3, backoff: 10ms }
    run: { command: 'test "$STAGEMESH_ATTEMPT" -ge 2' }
`),
    );
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED);
    assert.deepEqual(run.stages[0]!.attempts.map((a) => [a.number, StageState[a.state]]), [
      [1, 'STAGE_STATE_FAILED'],
      [2, 'STAGE_STATE_SUCCEEDED'],
    ]);
  });

  it('fails a stage that outlives its timeout', async () => {
    const run = await runToEnd(t.clients, inline('name: slow\nstages:\n  - { id: s, framework: shell, timeout: 100ms, run: { command: sleep 5 } }'));
    assert.equal(run.state, RunState.RUN_STATE_FAILED);
    assert.match(run.stages[0]!.attempts[0]!.evidence!.error, /timed out/);
  });

  it('cancels a run and stops its running stage', async () => {
    const { run } = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline('name: long\nstages:\n  - { id: s, framework: shell, run: { command: sleep 30 } }'));
    await waitForRun(t.clients, run!.runId, (r) => r.stages[0]!.attempts.length > 0);
    const started = Date.now();
    const { run: cancelled } = await callUnary(t.clients.scheduler.cancelRun.bind(t.clients.scheduler), { runId: run!.runId, reason: 'test' });
    assert.equal(cancelled!.state, RunState.RUN_STATE_CANCELLED);
    assert.equal(cancelled!.reason, 'test');
    assert.equal(cancelled!.stages[0]!.state, StageState.STAGE_STATE_CANCELLED);
    assert.ok(Date.now() - started < 5000);
    const nodes = await callUnary(t.clients.coordinator.listNodes.bind(t.clients.coordinator), {});
    const deadline = Date.now() + 5000;
    let running = nodes.nodes[0]!.running;
    while (running > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      running = (await callUnary(t.clients.coordinator.listNodes.bind(t.clients.coordinator), {})).nodes[0]!.running;
    }
    assert.equal(running, 0, 'the worker still runs the cancelled stage');
  });

  it('returns the same run for a repeated idempotency key', async () => {
    const request = inline('name: once\nstages:\n  - { id: a, framework: noop }', { idempotencyKey: `key-${Date.now()}` });
    const first = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), request);
    const second = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), request);
    assert.equal(second.run!.runId, first.run!.runId);
  });

  it('fails a run whose deadline passes', async () => {
    const run = await runToEnd(t.clients, inline('name: late\nstages:\n  - { id: s, framework: sleep, run: { duration: 10s } }', { deadline: '200ms' }));
    assert.equal(run.state, RunState.RUN_STATE_FAILED);
    assert.match(run.reason, /deadline/);
  });

  it('RunAndWait returns the run as it stands when the wait ends, and the run goes on', async () => {
    const { run, finished } = await callUnary(t.clients.scheduler.runAndWait.bind(t.clients.scheduler), RunAndWaitRequest.fromPartial({
      submit: inline('name: waits\nstages:\n  - { id: s, framework: sleep, run: { duration: 3s } }'),
      waitTimeout: '100ms',
    }));
    assert.equal(finished, false);
    assert.equal(run!.state, RunState.RUN_STATE_RUNNING);
    const done = await waitForRun(t.clients, run!.runId, (r) => r.state === RunState.RUN_STATE_SUCCEEDED, 15_000);
    assert.equal(done.stages[0]!.state, StageState.STAGE_STATE_SUCCEEDED);
  });

  it('RunAndWait answers before the caller deadline instead of DEADLINE_EXCEEDED', async () => {
    const { finished } = await callUnary(
      t.clients.scheduler.runAndWait.bind(t.clients.scheduler),
      RunAndWaitRequest.fromPartial({ submit: inline('name: waits\nstages:\n  - { id: s, framework: sleep, run: { duration: 5s } }'), waitTimeout: '' }),
      { timeoutMs: 1500 },
    );
    assert.equal(finished, false);
  });

  it('RunAndWait and GetRun answer a run without its stages for RUN_VIEW_BASIC', async () => {
    const scheduler = t.clients.scheduler;
    const pipeline = 'name: viewed\nstages:\n  - { id: a, framework: noop }\n  - { id: b, framework: noop, needs: [a] }';
    const { run, finished } = await callUnary(scheduler.runAndWait.bind(scheduler), RunAndWaitRequest.fromPartial({ submit: inline(pipeline), waitTimeout: '10s', view: RunView.RUN_VIEW_BASIC }));
    assert.equal(finished, true);
    assert.equal(run!.state, RunState.RUN_STATE_SUCCEEDED);
    assert.deepEqual(run!.stages, []);
    assert.ok(run!.finishedAt, 'a basic run still says when it finished');
    const basic = await callUnary(scheduler.getRun.bind(scheduler), GetRunRequest.fromPartial({ runId: run!.runId, view: RunView.RUN_VIEW_BASIC }));
    assert.deepEqual(basic.run, run);
    const full = await callUnary(scheduler.getRun.bind(scheduler), GetRunRequest.fromPartial({ runId: run!.runId, view: RunView.RUN_VIEW_FULL }));
    assert.deepEqual(full.run!.stages.map((s) => [s.stageId, s.state, s.attempts.length]), [['a', StageState.STAGE_STATE_SUCCEEDED, 1], ['b', StageState.STAGE_STATE_SUCCEEDED, 1]]);
    assert.deepEqual({ ...full.run, stages: [] }, run);

  });

  it('WatchRun streams each change until the run finishes', async () => {
    const { run } = await callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline('name: watched\nstages:\n  - { id: a, framework: sleep, run: { duration: 50ms } }\n  - { id: b, framework: noop, needs: [a] }'));
    const states: string[] = [];
    for await (const message of t.clients.scheduler.watchRun({ runId: run!.runId }) as AsyncIterable<{ run: { state: RunState } }>) {
      states.push(RunState[message.run.state]);
    }
    assert.equal(states.at(-1), 'RUN_STATE_SUCCEEDED');
    assert.ok(states.length >= 2);
  });

  it('keeps a registry of pipeline versions and runs them by name@version', async () => {
    const register = (document: string) => callUnary(t.clients.scheduler.registerPipeline.bind(t.clients.scheduler), { document });
    const v1 = await register('name: reg\nstages:\n  - { id: a, framework: noop }');
    const v2 = await register('name: reg\nstages:\n  - { id: a, framework: noop }\n  - { id: b, framework: noop, needs: [a] }');
    assert.deepEqual([v1.pipeline!.version, v2.pipeline!.version], ['1', '2']);
    const again = await register('name: reg\nversion: "1"\nstages:\n  - { id: a, framework: noop }');
    assert.equal(again.pipeline!.version, '1');
    await assert.rejects(register('name: reg\nversion: "1"\nstages:\n  - { id: z, framework: noop }'), (err) => grpcCode(err) === status.ALREADY_EXISTS);
    const latest = await callUnary(t.clients.scheduler.getPipeline.bind(t.clients.scheduler), { name: 'reg', version: '' });
    assert.equal(latest.pipeline!.stages.length, 2);
    const run = await runToEnd(t.clients, inline('', { document: undefined, pipelineRef: 'reg@1' }));
    assert.equal(run.pipelineVersion, '1');
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED);
    await assert.rejects(runToEnd(t.clients, inline('', { document: undefined, pipelineRef: 'reg@9' })), (err) => grpcCode(err) === status.NOT_FOUND);
    const list = await callUnary(t.clients.scheduler.listPipelines.bind(t.clients.scheduler), { pageSize: 0, pageToken: '' });
    assert.ok(list.pipelines.some((p) => p.name === 'reg' && p.version === '2'));
  });

  it('lists runs newest first, page by page, filtered by pipeline', async () => {
    const page1 = await callUnary(t.clients.scheduler.listRuns.bind(t.clients.scheduler), { pageSize: 2, pageToken: '', pipelineName: '', state: 0 });
    assert.equal(page1.runs.length, 2);
    assert.ok(page1.runs[0]!.createdAt! >= page1.runs[1]!.createdAt!);
    const page2 = await callUnary(t.clients.scheduler.listRuns.bind(t.clients.scheduler), { pageSize: 2, pageToken: page1.nextPageToken, pipelineName: '', state: 0 });
    assert.ok(!page2.runs.some((r) => page1.runs.some((p) => p.runId === r.runId)));
    const hellos = await callUnary(t.clients.scheduler.listRuns.bind(t.clients.scheduler), { pageSize: 100, pageToken: '', pipelineName: 'hello', state: RunState.RUN_STATE_SUCCEEDED });
    assert.ok(hellos.runs.length >= 2 && hellos.runs.every((r) => r.pipelineName === 'hello'));
    await assert.rejects(
      callUnary(t.clients.scheduler.listRuns.bind(t.clients.scheduler), { pageSize: 2, pageToken: 'garbage', pipelineName: '', state: 0 }),
      (err) => grpcCode(err) === status.INVALID_ARGUMENT,
    );
  });

  it('lists the worker node and its frameworks', async () => {
    const { nodes } = await callUnary(t.clients.coordinator.listNodes.bind(t.clients.coordinator), {});
    assert.equal(nodes[0]?.nodeId, 'embedded-worker');
    const { frameworks } = await callUnary(t.clients.coordinator.listFrameworks.bind(t.clients.coordinator), {});
    assert.deepEqual(frameworks.map((f) => f.framework), ['http', 'mocha', 'node-test', 'noop', 'pytest', 'shell', 'sleep', 'wait-event']);
    await assert.rejects(callUnary(t.clients.coordinator.drainNode.bind(t.clients.coordinator), { nodeId: 'nope' }), (err) => grpcCode(err) === status.NOT_FOUND);
  });

  it('serves the default compliance policy', async () => {
    const policy = await callUnary(t.clients.compliance.getPolicy.bind(t.clients.compliance), {});
    assert.equal(policy.policy!.threshold, 0.9);
  });
});
