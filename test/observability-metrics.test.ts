import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { callUnary } from '../services/common/grpc-client.js';
import { FIELD_PATH_METADATA } from '../services/common/grpc-status.js';
import { GroupBy, type Event, type MetricSeries, type SubscribeResponse, type WatchResponse } from '../services/common/proto.js';
import { inline, runToEnd, startTestMesh, type TestMesh } from './support/mesh.js';

const chain = (name: string, framework: 'noop' | 'sleep', length: number, sleep = '') => `
name: ${name}
stages:
${Array.from({ length }, (_, i) => `  - { id: s${i}, framework: ${framework}${sleep ? `, run: { duration: ${sleep} }` : ''}${i ? `, needs: [s${i - 1}]` : ''} }`).join('\n')}
`;

const parallel = (name: string, width: number, sleep: string) => `
name: ${name}
stages:
${Array.from({ length: width }, (_, i) => `  - { id: p${i}, framework: sleep, run: { duration: ${sleep} } }`).join('\n')}
`;

function expectInvalid(fieldPath: string) {
  return (err: unknown) => {
    const e = err as ServiceError;
    assert.equal(e.code, status.INVALID_ARGUMENT, e.message);
    assert.equal(String(e.metadata.get(FIELD_PATH_METADATA)[0]), fieldPath, e.message);
    return true;
  };
}

/** Polls Query (bounded) until `accept` finds the series it waits for. */
async function waitForSeries(t: TestMesh, groupBy: GroupBy, accept: (series: MetricSeries[]) => boolean, window = '1m'): Promise<MetricSeries[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { series } = await callUnary(t.clients.metrics.query.bind(t.clients.metrics), { window, groupBy });
    if (accept(series)) return series;
    if (Date.now() > deadline) assert.fail(`metrics did not show the expected figures within 10 s: ${JSON.stringify(series)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('metrics - throughput, latency and baselines of a running mesh', function () {
  this.timeout(60_000);
  let t: TestMesh;

  before(async () => {
    t = await startTestMesh({ metricsCheckIntervalMs: 200 });
  });

  after(async () => {
    await t?.destroy();
  });

  it('counts a run\'s stages per framework, node and pipeline with HDR latency percentiles', async () => {
    const run = await runToEnd(t.clients, inline(chain('obs-count', 'sleep', 3, '30ms')));
    assert.equal(run.stages.length, 3);
    const byPipeline = await waitForSeries(t, GroupBy.GROUP_BY_PIPELINE, (s) => s.some((x) => x.group === 'obs-count' && x.stagesSucceeded === 3 && x.runsFinished === 1));
    const mine = byPipeline.find((x) => x.group === 'obs-count')!;
    assert.equal(mine.stagesFailed, 0);
    assert.equal(mine.execution!.count, 3);
    // Each stage sleeps 30 ms: the worker's execution time says so, and end-to-end includes it.
    assert.ok(mine.execution!.p50Ms >= 29 && mine.execution!.p50Ms < 1_000, `execution p50 ${mine.execution!.p50Ms} ms`);
    assert.equal(mine.endToEnd!.count, 3);
    assert.ok(mine.endToEnd!.p95Ms >= mine.execution!.p50Ms, `end-to-end p95 ${mine.endToEnd!.p95Ms} ms`);
    assert.equal(mine.queueWait!.count, 3);
    assert.ok(mine.stagesPerSec > 0 && mine.runsPerSec > 0);
    const byNode = await waitForSeries(t, GroupBy.GROUP_BY_NODE, (s) => s.some((x) => x.group === 'embedded-worker'));
    assert.ok(byNode.find((x) => x.group === 'embedded-worker')!.stagesSucceeded >= 3);
    const byFramework = await waitForSeries(t, GroupBy.GROUP_BY_FRAMEWORK, (s) => s.some((x) => x.group === 'sleep'));
    assert.equal(byFramework.find((x) => x.group === 'sleep')!.runsFinished, 0, 'runs have no framework');
    for (const window of ['5m', '1h']) {
      const [all] = await waitForSeries(t, GroupBy.GROUP_BY_UNSPECIFIED, (s) => (s[0]?.stagesSucceeded ?? 0) >= 3, window);
      assert.equal(all!.group, '');
    }
  });

  it('serves the Prometheus text at /metrics with the run\'s stages counted', async () => {
    const run = await runToEnd(t.clients, inline(chain('obs-prom', 'noop', 4)));
    assert.equal(run.stages.length, 4);
    const counter = /^stagemesh_stages_total\{framework="noop",outcome="succeeded"\} (\d+)$/m;
    const deadline = Date.now() + 10_000;
    let text = '';
    while (Date.now() < deadline) {
      const response = await fetch(`${t.httpUrl}/metrics`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      text = await response.text();
      if (Number(counter.exec(text)?.[1] ?? 0) >= 4) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(Number(counter.exec(text)?.[1] ?? 0) >= 4, text.slice(0, 2_000));
    assert.match(text, /^# TYPE stagemesh_stage_duration_seconds histogram$/m);
    assert.match(text, /^stagemesh_stage_duration_seconds_bucket\{le="\+Inf",framework="noop"\} [1-9]\d*$/m);
    assert.match(text, /^stagemesh_stage_end_to_end_seconds_count\{framework="noop"\} [1-9]\d*$/m);
    assert.match(text, /^stagemesh_stage_queue_wait_seconds_sum\{framework="noop"\} /m);
    assert.match(text, /^stagemesh_runs_total\{state="SUCCEEDED"\} [1-9]\d*$/m);
    assert.match(text, /^process_cpu_user_seconds_total \d/m, 'Node process metrics');
    assert.match(text, /^nodejs_eventloop_lag_seconds /m);
  });

  it('streams the figures to a Watch at the interval asked', async () => {
    const stream = t.clients.metrics.watch({ window: '1m', groupBy: GroupBy.GROUP_BY_FRAMEWORK, interval: '100ms' });
    const started = Date.now();
    const updates = await new Promise<WatchResponse[]>((resolve, reject) => {
      const seen: WatchResponse[] = [];
      stream.on('data', (m: WatchResponse) => {
        seen.push(m);
        if (seen.length === 3) {
          stream.cancel();
          resolve(seen);
        }
      });
      stream.on('error', (err: ServiceError) => (err.code === status.CANCELLED ? undefined : reject(err)));
    });
    assert.ok(Date.now() - started >= 180, 'three updates 100 ms apart');
    assert.ok(updates.every((u) => u.window === '1m' && u.series.some((s) => s.group === 'noop')));
  });

  it('refuses bad Query, Watch and SetBaseline input with the field path', async () => {
    const query = t.clients.metrics.query.bind(t.clients.metrics);
    await assert.rejects(callUnary(query, { window: '10m', groupBy: 0 }), expectInvalid('window'));
    await assert.rejects(callUnary(query, { window: '1m', groupBy: 42 as GroupBy }), expectInvalid('group_by'));
    const watchError = (request: { window: string; interval: string }) =>
      new Promise<ServiceError>((resolve) => {
        const stream = t.clients.metrics.watch({ groupBy: 0, ...request });
        stream.on('data', () => undefined);
        stream.on('error', resolve);
      });
    expectInvalid('interval')(await watchError({ window: '1m', interval: 'often' }));
    expectInvalid('interval')(await watchError({ window: '1m', interval: '10ms' }));
    expectInvalid('window')(await watchError({ window: 'forever', interval: '1s' }));
    const set = t.clients.metrics.setBaseline.bind(t.clients.metrics);
    const base = { name: 'ok', stagesPerSec: 10, p95Ms: 0, tolerance: 0.1, window: '', groupBy: 0, group: '', minSamples: 0, updatedAt: undefined };
    await assert.rejects(callUnary(set, { baseline: undefined }), expectInvalid('baseline'));
    await assert.rejects(callUnary(set, { baseline: { ...base, name: '' } }), expectInvalid('baseline.name'));
    await assert.rejects(callUnary(set, { baseline: { ...base, name: 'No Spaces' } }), expectInvalid('baseline.name'));
    await assert.rejects(callUnary(set, { baseline: { ...base, tolerance: -0.1 } }), expectInvalid('baseline.tolerance'));
    await assert.rejects(callUnary(set, { baseline: { ...base, stagesPerSec: -1 } }), expectInvalid('baseline.stages_per_sec'));
    await assert.rejects(callUnary(set, { baseline: { ...base, stagesPerSec: 0 } }), expectInvalid('baseline'));
    await assert.rejects(callUnary(set, { baseline: { ...base, window: '2m' } }), expectInvalid('baseline.window'));
    await assert.rejects(callUnary(set, { baseline: { ...base, group: 'shell' } }), expectInvalid('baseline.group'));
    const response = await fetch(`${t.httpUrl}/v1/baselines`, { method: 'POST', body: JSON.stringify({ baseline: { name: 'edge', stagesPerSec: 5, tolerance: -1 } }) });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { error: { field_path: string } }).error.field_path, 'baseline.tolerance');
  });

  it('stores baselines with their defaults and lists them, also over HTTP', async () => {
    const { baseline } = await callUnary(t.clients.metrics.setBaseline.bind(t.clients.metrics), {
      baseline: { name: 'seed', stagesPerSec: 52.2, p95Ms: 0, tolerance: 0, window: '', groupBy: 0, group: '', minSamples: 0, updatedAt: undefined },
    });
    assert.deepEqual([baseline!.tolerance, baseline!.window, baseline!.minSamples], [0.1, '5m', 20]);
    assert.ok(baseline!.updatedAt instanceof Date);
    const response = await fetch(`${t.httpUrl}/v1/baselines`);
    const listed = ((await response.json()) as { baselines: { name: string; stagesPerSec: number }[] }).baselines;
    assert.deepEqual(listed.find((b) => b.name === 'seed')?.stagesPerSec, 52.2);
    const queried = await fetch(`${t.httpUrl}/v1/metrics?window=5m&groupBy=GROUP_BY_PIPELINE`);
    assert.equal(queried.status, 200);
    assert.ok(((await queried.json()) as { series: { group: string }[] }).series.some((s) => s.group === 'obs-count'));
  });

  it('publishes metrics.regression with the evidence when a slowdown breaks a baseline', async () => {
    const regressions: Event[] = [];
    const stream = t.clients.eventBus.subscribe({ subjects: ['metrics.regression'], filter: { baseline: 'obs-latency' }, newOnly: true, consumer: '', ackTimeout: '', maxDeliver: 0 });
    stream.on('data', (m: SubscribeResponse) => regressions.push(m.event!));
    stream.on('error', () => undefined);
    try {
      await new Promise((r) => setTimeout(r, 100));
      await callUnary(t.clients.metrics.setBaseline.bind(t.clients.metrics), {
        baseline: { name: 'obs-latency', stagesPerSec: 0, p95Ms: 1_000, tolerance: 0.5, window: '1m', groupBy: GroupBy.GROUP_BY_PIPELINE, group: 'obs-slow', minSamples: 3, updatedAt: undefined },
      });
      // Fast stages first: within the baseline, several checks pass without an event.
      await runToEnd(t.clients, inline(chain('obs-slow', 'noop', 3)));
      await waitForSeries(t, GroupBy.GROUP_BY_PIPELINE, (s) => s.some((x) => x.group === 'obs-slow' && x.stagesSucceeded === 3));
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(regressions.length, 0, 'no regression while the stages are fast');
      // The slowdown: the same pipeline, now four stages of 2.5 s side by side.
      await runToEnd(t.clients, inline(parallel('obs-slow', 4, '2500ms')));
      const deadline = Date.now() + 10_000;
      while (regressions.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(regressions.length, 1, 'one metrics.regression event');
      const [event] = regressions;
      assert.equal(event!.type, 'metrics.regression');
      const data = event!.data as Record<string, unknown>;
      assert.equal(data.baseline, 'obs-latency');
      assert.equal(data.metric, 'p95_ms');
      assert.equal(data.expected, 1_000);
      assert.equal(data.tolerance, 0.5);
      assert.equal(data.window, '1m');
      assert.equal(data.group, 'obs-slow');
      assert.equal(data.threshold, 1_500);
      assert.ok(Number(data.observed) >= 2_480, `observed p95 ${String(data.observed)} ms`);
      assert.ok(Number(data.samples) >= 4, 'the fast stages and at least one slow one');
      // Not more than once per window: further checks while the regression lasts stay quiet.
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(regressions.length, 1);
    } finally {
      stream.cancel();
    }
  });
});
