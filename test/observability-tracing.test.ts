import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callUnary } from '../services/common/grpc-client.js';
import { RunState, type Event } from '../services/common/proto.js';
import { DEFAULT_TRACES_PER_SECOND, endWork, flushTelemetry, handleTracedEvent, serviceNameOf, startAttemptWork, startTelemetry, startWork, stopTelemetry, traceAttemptHop, TracedComponent, traceparentOf } from '../services/common/telemetry.js';
import { startJaeger, type JaegerInstance } from './support/jaeger.js';
import { inline, runToEnd, startTestMesh, waitForRun, type TestMesh } from './support/mesh.js';
import { runCli } from './support/cli.js';
import { startMeshProcess, type MeshProcess } from './support/mesh-process.js';
import { repoRoot, requireTool, sleep } from './support/tools.js';

interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  processID: string;
  tags: { key: string; value: unknown }[];
}
interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
}

/** The components one run's trace must show, as Jaeger services. */
const RUN_COMPONENTS = [TracedComponent.SCHEDULER, TracedComponent.COORDINATOR, TracedComponent.EVENT_BUS, TracedComponent.COMPLIANCE, TracedComponent.METRICS, TracedComponent.WORKER];

const pipeline = `
name: traced
description: three stages crossing every hop
stages:
  - { id: build, framework: shell, run: { command: "echo build" } }
  - { id: unit, framework: noop, needs: [build] }
  - { id: report, framework: shell, needs: [unit], run: { command: "echo report" } }
`;

const tag = (span: JaegerSpan, key: string) => span.tags.find((t) => t.key === key)?.value;

/** The traces Jaeger holds with spans of `service` tagged with the run id. */
async function tracesOfRun(jaeger: JaegerInstance, service: string, runId: string): Promise<JaegerTrace[]> {
  const response = await fetch(`${jaeger.queryUrl}/api/traces?service=${service}&tags=${encodeURIComponent(JSON.stringify({ 'stagemesh.run_id': runId }))}&lookback=1h&limit=20`);
  return response.ok ? (((await response.json()) as { data: JaegerTrace[] | null }).data ?? []) : [];
}

describe('observability - one trace per run in a real Jaeger', function () {
  this.timeout(120_000);
  let jaeger: JaegerInstance | undefined;
  let t: TestMesh | undefined;
  const saved = { ...process.env };

  before(async function () {
    requireTool('jaeger', this);
    jaeger = await startJaeger();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = jaeger.otlpHttp;
    process.env.OTEL_BSP_SCHEDULE_DELAY = '100';
    delete process.env.OTEL_SDK_DISABLED;
    delete process.env.OTEL_TRACES_EXPORTER;
    delete process.env.OTEL_SERVICE_NAME;
    assert.equal(await startTelemetry({ processComponent: TracedComponent.CLI }), true, 'tracing starts when OTEL_EXPORTER_OTLP_ENDPOINT is set');
    t = await startTestMesh();
  });

  after(async () => {
    await t?.destroy();
    await stopTelemetry();
    for (const key of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_BSP_SCHEDULE_DELAY']) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
    await jaeger?.stop();
  });

  it('shows the run as one trace with spans of the five services and the worker, carrying run and stage ids', async () => {
    assert.ok(jaeger && t);
    const run = await runToEnd(t.clients, inline(pipeline));
    assert.equal(run.state, RunState.RUN_STATE_SUCCEEDED);
    // Metrics and the audit follow the run asynchronously: poll Jaeger (bounded) until every component's spans arrived.
    const deadline = Date.now() + 45_000;
    let trace: JaegerTrace | undefined;
    let last = '';
    for (;;) {
      await flushTelemetry();
      const found = await tracesOfRun(jaeger, serviceNameOf(TracedComponent.SCHEDULER), run.runId);
      last = `${found.length} traces`;
      if (found.length > 1) assert.fail(`the run is split over ${found.length} traces: ${found.map((x) => x.traceID).join(', ')}`);
      if (found.length === 1) {
        const full = await fetch(`${jaeger.queryUrl}/api/traces/${found[0]!.traceID}`);
        trace = ((await full.json()) as { data: JaegerTrace[] }).data[0];
        const services = new Set(Object.values(trace!.processes).map((p) => p.serviceName));
        const audited = trace!.spans.some((s) => s.operationName === 'audit run');
        if (audited && RUN_COMPONENTS.every((c) => services.has(serviceNameOf(c)))) break;
        last = `services so far: ${[...services].join(', ')}`;
      }
      if (Date.now() > deadline) assert.fail(`no complete trace of run ${run.runId} within 45 s (last: ${last})\n${jaeger.output().slice(-2_000)}`);
      await sleep(250);
    }
    const serviceOf = (span: JaegerSpan) => trace!.processes[span.processID]!.serviceName;
    for (const component of RUN_COMPONENTS) assert.ok(trace!.spans.some((s) => serviceOf(s) === serviceNameOf(component)), component);
    // Every span naming a run names this one; each stage shows up in the scheduler and on the worker, with its outcome.
    const runIds = new Set(trace!.spans.map((s) => tag(s, 'stagemesh.run_id')).filter((v) => v !== undefined));
    assert.deepEqual([...runIds], [run.runId]);
    for (const stageId of ['build', 'unit', 'report']) {
      for (const component of [TracedComponent.SCHEDULER, TracedComponent.COORDINATOR, TracedComponent.WORKER]) {
        const spans = trace!.spans.filter((s) => serviceOf(s) === serviceNameOf(component) && tag(s, 'stagemesh.stage_id') === stageId);
        assert.ok(spans.length > 0, `${component} span of stage ${stageId}`);
      }
      const worker: JaegerSpan = trace!.spans.find((s) => serviceOf(s) === serviceNameOf(TracedComponent.WORKER) && tag(s, 'stagemesh.stage_id') === stageId)!;
      assert.equal(tag(worker, 'stagemesh.outcome'), 'SUCCEEDED');
      assert.equal(tag(worker, 'stagemesh.attempt'), 1);
    }
    // The hops in order: scheduler → coordinator → worker → coordinator → scheduler, then event-bus → metrics.
    const byId = new Map(trace!.spans.map((s) => [s.spanID, s]));
    const parentOf = (span: JaegerSpan) => {
      const ref = (span as unknown as { references: { refType: string; spanID: string }[] }).references.find((r) => r.refType === 'CHILD_OF');
      return ref ? byId.get(ref.spanID) : undefined;
    };
    const chain = (span: JaegerSpan | undefined) => {
      const names: string[] = [];
      for (let s = span; s; s = parentOf(s)) names.unshift(serviceOf(s).replace(/^stagemesh-/, ''));
      return names;
    };
    const metricsOfBuild = trace!.spans.find((s) => serviceOf(s) === serviceNameOf(TracedComponent.METRICS) && s.operationName === 'record stage.succeeded' && tag(s, 'stagemesh.stage_id') === 'build');
    assert.ok(metricsOfBuild, 'metrics span of build');
    const hops = chain(metricsOfBuild).filter((c, i, all) => c !== all[i - 1]);
    assert.deepEqual(hops.slice(-7), ['scheduler', 'coordinator', 'worker', 'coordinator', 'scheduler', 'event-bus', 'metrics']);
    const validate = trace!.spans.find((s) => serviceOf(s) === serviceNameOf(TracedComponent.COMPLIANCE) && s.operationName === 'stagemesh.v1.Compliance/Validate');
    assert.ok(validate, 'the admission check is part of the run');
    assert.ok(trace!.spans.some((s) => serviceOf(s) === serviceNameOf(TracedComponent.COMPLIANCE) && s.operationName === 'audit run'), 'the audit of the finished run');
  });

  it('traces a `stagemesh start` process configured only by OTEL_* variables, with its own service name prefix', async () => {
    assert.ok(jaeger);
    const dataDir = mkdtempSync(join(tmpdir(), 'stagemesh-traced-'));
    let mesh: MeshProcess | undefined;
    try {
      mesh = await startMeshProcess(dataDir, { OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttp, OTEL_SERVICE_NAME: 'traced-mesh', OTEL_BSP_SCHEDULE_DELAY: '100' });
      const { address } = mesh;
      const { code, stderr } = await runCli('--address', address, 'run', join(repoRoot, 'examples', 'hello.yaml'));
      assert.equal(code, 0, stderr);
      const wanted = RUN_COMPONENTS.map((c) => serviceNameOf(c, { OTEL_SERVICE_NAME: 'traced-mesh' }));
      const deadline = Date.now() + 30_000;
      let services: string[] = [];
      while (!wanted.every((w) => services.includes(w))) {
        if (Date.now() > deadline) assert.fail(`Jaeger knows ${services.join(', ')}; expected ${wanted.join(', ')}`);
        await sleep(250);
        services = ((await (await fetch(`${jaeger.queryUrl}/api/services`)).json()) as { data: string[] | null }).data ?? [];
      }
      assert.equal(await mesh.terminate(), 0);
    } finally {
      mesh?.child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('keeps a run resumed after a restart in its trace', async () => {
    assert.ok(jaeger);
    const dataDir = mkdtempSync(join(tmpdir(), 'stagemesh-traced-restart-'));
    let mesh: TestMesh | undefined;
    try {
      mesh = await startTestMesh({ dataDir, shutdownTimeoutMs: 200 });
      const { run } = await callUnary(mesh.clients.scheduler.submitRun.bind(mesh.clients.scheduler), inline('name: traced-resume\nstages:\n  - { id: s, framework: shell, run: { command: sleep 2 } }\n  - { id: t, framework: noop, needs: [s] }'));
      await waitForRun(mesh.clients, run!.runId, (r) => r.stages[0]!.attempts.length > 0);
      await sleep(100);
      await mesh.stop();
      mesh = await startTestMesh({ dataDir });
      const done = await waitForRun(mesh.clients, run!.runId, (r) => r.state !== RunState.RUN_STATE_RUNNING, 15_000);
      assert.equal(done.state, RunState.RUN_STATE_SUCCEEDED);
      assert.equal(done.stages[0]!.attempts.length, 2, 'the interrupted stage ran again');
      const deadline = Date.now() + 30_000;
      for (;;) {
        await flushTelemetry();
        const traces = await tracesOfRun(jaeger, serviceNameOf(TracedComponent.WORKER), run!.runId);
        if (traces.length > 1) assert.fail(`the resumed run is split over ${traces.length} traces`);
        const attempts = traces[0]?.spans.filter((s) => tag(s, 'stagemesh.stage_id') === 's' && s.operationName === 'run shell stage').map((s) => tag(s, 'stagemesh.attempt'));
        if (attempts?.includes(2) && traces[0]!.spans.some((s) => tag(s, 'stagemesh.stage_id') === 't')) break;
        if (Date.now() > deadline) assert.fail(`the resumed attempt is not in the run's trace within 30 s (attempts seen: ${JSON.stringify(attempts)})`);
        await sleep(250);
      }
    } finally {
      await mesh?.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
  it('without OTEL_TRACES_SAMPLER samples new traces up to the rate, and their spans follow', async () => {
    assert.equal(process.env.OTEL_TRACES_SAMPLER, undefined);
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // a full second of credit
    const roots = Array.from({ length: 100 }, () => startWork(TracedComponent.SCHEDULER, 'root', '', {})!);
    const sampled = roots.filter((w) => w.traceparent.endsWith('-01'));
    assert.ok(sampled.length >= DEFAULT_TRACES_PER_SECOND && sampled.length <= DEFAULT_TRACES_PER_SECOND + 1, `${sampled.length} of 100 new traces sampled in a burst`);
    for (const root of roots) {
      const child = startWork(TracedComponent.WORKER, 'child', root.traceparent, {})!;
      assert.equal(child.traceparent.slice(-2), root.traceparent.slice(-2), 'a span follows the decision of its parent');
      endWork(child);
      endWork(root);
    }
  });

  it('passes a trace the sampler left out on unchanged, recording nothing, and continues a sampled one', () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const unsampled = `00-${traceId}-00f067aa0ba902b7-00`;
    const sampled = `00-${traceId}-00f067aa0ba902b7-01`;
    const fields = { runId: 'r1', stageId: 's1', attempt: 1, framework: 'noop', pipelineName: 'p' };
    assert.equal(traceAttemptHop(TracedComponent.COORDINATOR, 'dispatch stage', unsampled, fields), unsampled);
    assert.equal(startAttemptWork(TracedComponent.WORKER, 'run noop stage', unsampled, fields), undefined);
    let handled = false;
    handleTracedEvent(TracedComponent.METRICS, 'record stage.ready', { headers: { traceparent: unsampled } } as unknown as Event, () => {
      handled = true;
      assert.equal(traceparentOf(), '', 'no span is active for an unsampled event');
    });
    assert.ok(handled);
    assert.match(traceAttemptHop(TracedComponent.COORDINATOR, 'dispatch stage', sampled, fields), new RegExp(`^00-${traceId}-(?!00f067aa0ba902b7)[0-9a-f]{16}-01$`));
  });
});
