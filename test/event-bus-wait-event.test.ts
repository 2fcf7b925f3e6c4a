import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { lifecycleEvent } from '../services/common/event-publisher.js';
import { callUnary } from '../services/common/grpc-client.js';
import { createLogger } from '../services/common/logger.js';
import { RunState } from '../services/common/proto.js';
import { WaitEventAdapter } from '../services/worker/adapters/wait-event-adapter.js';
import { Worker } from '../services/worker/worker.js';
import { inline, startTestMesh, waitForRun, type TestMesh } from './support/mesh.js';

// The mesh's own worker does not offer wait-event yet; a second worker with the adapter joins it here.
describe('event bus - wait-event stages and event triggers on a running mesh', function () {
  this.timeout(60_000);
  let mesh: TestMesh;
  let worker: Worker;
  const logger = createLogger({ level: 'silent' });

  before(async () => {
    mesh = await startTestMesh();
    worker = await Worker.start({ address: mesh.address, logger, nodeId: 'wait-event-worker', capacity: 4, adapters: [new WaitEventAdapter(mesh.clients.eventBus)], drainTimeoutMs: 1_000 });
  });

  after(async () => {
    await worker?.stop();
    await mesh?.destroy();
  });

  const publish = (type: string, data: Record<string, unknown>) =>
    callUnary(mesh.clients.eventBus.publish.bind(mesh.clients.eventBus), { event: lifecycleEvent(type, 'user/test', `${type}/1`, {}, data) }, { timeoutMs: 5_000 });

  it('completes a wait-event stage when a matching event is published through the API', async () => {
    const document = [
      'name: release',
      'owner: test',
      'description: waits for approval',
      'stages:',
      '  - id: approval',
      '    framework: wait-event',
      '    timeout: 30s',
      '    outputs: [approver]',
      '    run: { event: release.approved, match: { version: "7" } }',
      '  - { id: after, framework: noop, needs: [approval] }',
    ].join('\n');
    const { run } = await callUnary(mesh.clients.scheduler.submitRun.bind(mesh.clients.scheduler), inline(document), { timeoutMs: 10_000 });
    // The scheduler shows the stage QUEUED until its outcome arrives, so the test cannot see the attempt start:
    // it publishes a non-matching event, then the matching one every 500 ms until the run finishes (bounded).
    await publish('release.approved', { version: '6', approver: 'mallory' });
    const deadline = Date.now() + 15_000;
    let finished = await waitForRun(mesh.clients, run!.runId, () => true);
    while (Date.now() < deadline && finished.state === RunState.RUN_STATE_RUNNING) {
      await publish('release.approved', { version: '7', approver: 'alice' });
      await sleep(500);
      finished = await waitForRun(mesh.clients, run!.runId, () => true);
    }
    const approval = finished.stages.find((s) => s.stageId === 'approval')!;
    assert.equal(approval.outputs.approver, 'alice');
    assert.equal(RunState[finished.state], 'RUN_STATE_SUCCEEDED');
  });

  it('starts a run when an event matches a pipeline trigger', async () => {
    const document = 'name: deploy\nowner: test\ndescription: deploys on push\ninputs: { ref: main }\ntriggers: [{ event: git.push, match: { repo: checkout } }]\nstages:\n  - { id: go, framework: noop }\n';
    await callUnary(mesh.clients.scheduler.registerPipeline.bind(mesh.clients.scheduler), { document }, { timeoutMs: 10_000 });
    const scheduler = mesh.clients.scheduler;
    // The mesh's own trigger listener subscribed when the mesh started; it reads
    // the registered triggers again at most once a second.
    {
      await sleep(1_500);
      await publish('git.push', { repo: 'billing', ref: 'v1' });
      await publish('git.push', { repo: 'checkout', ref: 'v2' });
      const deadline = Date.now() + 15_000;
      let runs = [] as Awaited<ReturnType<typeof listRuns>>;
      async function listRuns() {
        return (await callUnary(scheduler.listRuns.bind(scheduler), { pageSize: 10, pageToken: '', pipelineName: 'deploy', state: 0 }, { timeoutMs: 5_000 })).runs;
      }
      while (Date.now() < deadline) {
        runs = await listRuns();
        if (runs.some((r) => r.state === RunState.RUN_STATE_SUCCEEDED)) break;
        await sleep(50);
      }
      assert.equal(runs.length, 1);
      assert.equal(RunState[runs[0]!.state], 'RUN_STATE_SUCCEEDED');
      assert.equal(runs[0]!.inputs.ref, 'v2');
      assert.equal(runs[0]!.labels.trigger, 'git.push');
    }
  });
});
