import assert from 'node:assert/strict';
import { startTestMesh, type TestMesh } from './support/mesh.js';

describe('edge - HTTP/JSON routes of the public RPCs', function () {
  let t: TestMesh;
  const request = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${t.httpUrl}${path}`, { method, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: response.status, json: (await response.json()) as Record<string, any> };
  };

  before(async () => {
    t = await startTestMesh();
  });

  after(async () => {
    await t?.destroy();
  });

  it('answers /healthz', async () => {
    assert.deepEqual(await request('GET', '/healthz'), { status: 200, json: { status: 'SERVING' } });
  });

  it('registers and reads pipelines', async () => {
    const created = await request('POST', '/v1/pipelines', { document: 'name: web\nstages:\n  - { id: a, framework: noop }' });
    assert.equal(created.status, 200);
    assert.equal(created.json.pipeline.version, '1');
    const got = await request('GET', '/v1/pipelines/web');
    assert.equal(got.json.pipeline.stages[0].id, 'a');
    const listed = await request('GET', '/v1/pipelines');
    assert.equal(listed.json.pipelines.length, 1);
  });

  it('submits a run and reads it back', async () => {
    const submitted = await request('POST', '/v1/runs', { pipelineRef: 'web' });
    assert.equal(submitted.status, 200);
    const runId = submitted.json.run.runId;
    const got = await request('GET', `/v1/runs/${runId}`);
    assert.equal(got.status, 200);
    assert.equal(got.json.run.runId, runId);
    const listed = await request('GET', '/v1/runs?pageSize=10');
    assert.ok(listed.json.runs.some((r: { runId: string }) => r.runId === runId));
    const basic = await request('GET', `/v1/runs/${runId}?view=RUN_VIEW_BASIC`);
    assert.equal(basic.status, 200);
    assert.equal(basic.json.run.runId, runId);
    assert.equal(basic.json.run.stages, undefined, 'the basic view leaves the stages out');
    const unknown = await request('GET', `/v1/runs/${runId}?view=EVERYTHING`);
    assert.equal(unknown.status, 400);
    assert.equal(unknown.json.error.field_path, 'view');
  });

  it('answers 400 with the field path for a bad pipeline', async () => {
    const cycle = await request('POST', '/v1/runs', { document: 'name: x\nstages:\n  - { id: a, framework: noop, needs: [a] }' });
    assert.equal(cycle.status, 400);
    assert.equal(cycle.json.error.status, 'INVALID_ARGUMENT');
    assert.equal(cycle.json.error.field_path, 'stages[0].needs');
  });

  it('answers 400 for a body that is not a JSON object', async () => {
    assert.equal((await request('POST', '/v1/runs', '{not json')).status, 400);
    assert.equal((await request('POST', '/v1/runs', '[1]')).json.error.field_path, 'body');
  });

  it('answers 404 for unknown runs and routes, 405 for wrong methods', async () => {
    assert.equal((await request('GET', '/v1/runs/nope')).status, 404);
    assert.equal((await request('GET', '/nowhere')).status, 404);
    assert.equal((await request('DELETE', '/v1/runs')).status, 405);
  });
});
