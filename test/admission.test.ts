import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { callUnary } from '../services/common/grpc-client.js';
import { FIELD_PATH_METADATA } from '../services/common/grpc-status.js';
import { GetRunRequest, ListRunsRequest, Pipeline, RunAndWaitRequest, RunView, Task, ValidateRequest } from '../services/common/proto.js';
import { inline, startTestMesh, type TestMesh } from './support/mesh.js';

/** Bad pipelines and the field path each must be refused with. */
const BAD: { name: string; document: string; fieldPath: string; message: RegExp }[] = [
  { name: 'malformed YAML', document: 'name: x\nstages: [\n  - id: a\n', fieldPath: 'document', message: /line 3/ },
  { name: 'an unknown framework', document: 'name: x\nstages:\n  - { id: a, framework: cobol }', fieldPath: 'stages[0].framework', message: /one of shell/ },
  { name: 'a cycle', document: 'name: x\nstages:\n  - { id: a, framework: noop, needs: [b] }\n  - { id: b, framework: noop, needs: [a] }', fieldPath: 'stages[0].needs', message: /cycle: a → b → a/ },
  { name: 'an unknown need', document: 'name: x\nstages:\n  - { id: a, framework: noop, needs: [ghost] }', fieldPath: 'stages[0].needs[0]', message: /ghost/ },
  { name: 'a missing command', document: 'name: x\nstages:\n  - { id: a, framework: shell, run: {} }', fieldPath: 'stages[0].run.command', message: /command/ },
  { name: 'a duplicate stage id', document: 'name: x\nstages:\n  - { id: a, framework: noop }\n  - { id: a, framework: noop }', fieldPath: 'stages[1].id', message: /more than once/ },
  { name: 'a definition over 1 MiB', document: `name: x\ndescription: "${'x'.repeat(1024 * 1024)}"\nstages:\n  - { id: a, framework: noop }`, fieldPath: 'document', message: /over the limit/ },
];

function expectInvalid(fieldPath: string, message: RegExp) {
  return (err: unknown) => {
    const e = err as ServiceError;
    assert.equal(e.code, status.INVALID_ARGUMENT, e.message);
    assert.equal(e.metadata.get(FIELD_PATH_METADATA)[0], fieldPath);
    assert.match(e.details, message);
    return true;
  };
}

describe('admission - bad input is refused with INVALID_ARGUMENT and nothing is stored', function () {
  let t: TestMesh;

  before(async () => {
    t = await startTestMesh();
  });

  after(async () => {
    await t?.destroy();
  });

  for (const bad of BAD) {
    it(`refuses ${bad.name} at ${bad.fieldPath}, on RegisterPipeline and on SubmitRun`, async () => {
      await assert.rejects(callUnary(t.clients.scheduler.registerPipeline.bind(t.clients.scheduler), { document: bad.document }), expectInvalid(bad.fieldPath, bad.message));
      await assert.rejects(callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline(bad.document)), expectInvalid(bad.fieldPath, bad.message));
    });
  }

  it('refuses a pipeline message with the same rules as a document', async () => {
    const pipeline = Pipeline.fromPartial({ name: 'x', stages: [{ id: 'a', framework: 'shell', run: {} }] });
    await assert.rejects(callUnary(t.clients.scheduler.registerPipeline.bind(t.clients.scheduler), { pipeline }), expectInvalid('stages[0].run', /run/));
  });

  it('refuses undeclared inputs, bad deadlines and empty requests', async () => {
    const ok = 'name: x\ninputs: { ref: main }\nstages:\n  - { id: a, framework: noop }';
    await assert.rejects(callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline(ok, { inputs: { reff: 'v2' } })), expectInvalid('inputs.reff', /declares no input "reff"/));
    await assert.rejects(callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline(ok, { deadline: 'soon' })), expectInvalid('deadline', /duration/));
    await assert.rejects(callUnary(t.clients.scheduler.submitRun.bind(t.clients.scheduler), inline('', { document: undefined })), expectInvalid('target', /required/));
    await assert.rejects(callUnary(t.clients.scheduler.runAndWait.bind(t.clients.scheduler), RunAndWaitRequest.fromPartial({ submit: undefined, waitTimeout: '' })), expectInvalid('submit', /required/));
    await assert.rejects(callUnary(t.clients.scheduler.runAndWait.bind(t.clients.scheduler), RunAndWaitRequest.fromPartial({ submit: inline(ok), waitTimeout: 'forever' })), expectInvalid('wait_timeout', /duration/));
    await assert.rejects(callUnary(t.clients.scheduler.getRun.bind(t.clients.scheduler), GetRunRequest.fromPartial({ runId: '' })), expectInvalid('run_id', /required/));
    await assert.rejects(callUnary(t.clients.scheduler.getPipeline.bind(t.clients.scheduler), { name: '', version: '' }), expectInvalid('name', /required/));
    await assert.rejects(callUnary(t.clients.compliance.validate.bind(t.clients.compliance), ValidateRequest.fromPartial({})), expectInvalid('definition', /required/));
    await assert.rejects(callUnary(t.clients.coordinator.enqueueTasks.bind(t.clients.coordinator), { tasks: [Task.fromPartial({ attemptId: '', runId: 'r', stageId: 's', framework: 'noop', attempt: 1, pipelineName: 'p' })] }), expectInvalid('tasks[0].attempt_id', /required/));
    await assert.rejects(callUnary(t.clients.eventBus.publish.bind(t.clients.eventBus), { event: undefined }), expectInvalid('event', /required/));
    await assert.rejects(callUnary(t.clients.eventBus.getTopicInfo.bind(t.clients.eventBus), { subject: 'a..b' }), expectInvalid('subject', /pattern/));
    await assert.rejects(callUnary(t.clients.metrics.query.bind(t.clients.metrics), { window: '2h', groupBy: 0 }), expectInvalid('window', /up to 1h/));
  });

  it('refuses an unknown run view before starting a run', async () => {
    const scheduler = t.clients.scheduler;
    const listed = async () => (await callUnary(scheduler.listRuns.bind(scheduler), ListRunsRequest.fromPartial({ pipelineName: 'unviewable', pageSize: 10 }))).runs.length;
    const submit = inline('name: unviewable\nstages:\n  - { id: a, framework: noop }');
    await assert.rejects(callUnary(scheduler.runAndWait.bind(scheduler), RunAndWaitRequest.fromPartial({ submit, view: 7 as RunView })), expectInvalid('view', /RUN_VIEW_BASIC or RUN_VIEW_FULL/));
    assert.equal(await listed(), 0, 'the refused RunAndWait started no run');
    await assert.rejects(callUnary(scheduler.getRun.bind(scheduler), GetRunRequest.fromPartial({ runId: 'any', view: RunView.UNRECOGNIZED })), expectInvalid('view', /RUN_VIEW_BASIC or RUN_VIEW_FULL/));
  });

  it('refuses bad subscriptions on the event bus', async () => {
    const cases: [{ subjects: string[]; consumer?: string }, string][] = [
      [{ subjects: ['a.>.b'] }, 'subjects[0]'],
    ];
    for (const [request, fieldPath] of cases) {
      const err = await new Promise<ServiceError>((resolve) => {
        const stream = t.clients.eventBus.subscribe({ filter: {}, consumer: '', ackTimeout: '', maxDeliver: 0, ...request });
        stream.on('data', () => undefined);
        stream.on('error', resolve);
      });
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.equal(err.metadata.get(FIELD_PATH_METADATA)[0], fieldPath);
    }
  });

  it('stored no pipeline and no run for any refused request', async () => {
    const pipelines = await callUnary(t.clients.scheduler.listPipelines.bind(t.clients.scheduler), { pageSize: 0, pageToken: '' });
    const runs = await callUnary(t.clients.scheduler.listRuns.bind(t.clients.scheduler), { pageSize: 0, pageToken: '', pipelineName: '', state: 0 });
    assert.deepEqual(pipelines.pipelines, []);
    assert.deepEqual(runs.runs, []);
  });

  it('accepts events published by users and hands back their sequence', async () => {
    const { sequence } = await callUnary(t.clients.eventBus.publish.bind(t.clients.eventBus), {
      event: { id: '', sequence: 0, type: 'release.approved', source: 'test', subject: '', time: undefined, datacontenttype: '', data: { version: '1' }, attributes: {}, headers: {}, key: '' },
    });
    assert.ok(sequence > 0);
    await assert.rejects(
      callUnary(t.clients.eventBus.publish.bind(t.clients.eventBus), {
        event: { id: '', sequence: 0, type: 'bad type!', source: 'test', subject: '', time: undefined, datacontenttype: '', data: {}, attributes: {}, headers: {}, key: '' },
      }),
      expectInvalid('event.type', /dot-separated/),
    );
  });
});
