import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callUnary } from '../services/common/grpc-client.js';
import { MeshChild, MeshChildError, MeshChildState } from './mesh-child.js';
import { prometheusValue } from './prometheus-sample.js';
import { withBenchTarget, type BenchTarget } from './run-bench.js';

/** Fake mesh entries: small scripts that behave like `stagemesh start` in one way each. */
const READY_LINE = `process.stdout.write('stagemesh ready in 1 ms: gRPC 127.0.0.1:1 (scheduler), HTTP http://127.0.0.1:2/healthz, data x\\n');`;
const FAKES = {
  ready: `${READY_LINE} process.on('SIGTERM', () => process.exit(0)); setInterval(() => undefined, 1000);`,
  deaf: `${READY_LINE} process.on('SIGTERM', () => undefined); setInterval(() => undefined, 1000);`,
  crashes: `process.stderr.write('cannot open the store\\n'); process.exit(3);`,
  silent: `process.on('SIGTERM', () => process.exit(0)); setInterval(() => undefined, 1000);`,
};

describe('MeshChild', () => {
  let scripts: string;
  const fake = (name: keyof typeof FAKES) => [join(scripts, `${name}.mjs`)];

  before(() => {
    scripts = mkdtempSync(join(tmpdir(), 'stagemesh-mesh-child-spec-'));
    for (const [name, code] of Object.entries(FAKES)) writeFileSync(join(scripts, `${name}.mjs`), code);
  });
  after(() => rmSync(scripts, { recursive: true, force: true }));

  describe('start()', () => {
    it('reads the gRPC address and the HTTP edge from the ready line', async () => {
      const child = await MeshChild.start({ entry: fake('ready') });
      try {
        assert.equal(child.state, MeshChildState.RUNNING);
        assert.equal(child.address, '127.0.0.1:1');
        assert.equal(child.metricsUrl, 'http://127.0.0.1:2/metrics');
        assert.ok(existsSync(child.dataDir));
      } finally {
        await child.stop();
      }
    });

    it('fails with the exit code and the last output of a mesh that exits before it is ready', async () => {
      const before = Date.now();
      await assert.rejects(MeshChild.start({ entry: fake('crashes') }), (err: unknown) => err instanceof MeshChildError && err.exit === 3 && err.outputTail.includes('cannot open the store'));
      assert.ok(Date.now() - before < 10_000);
    });

    it('gives up on a mesh that never prints its ready line, and stops it', async () => {
      await assert.rejects(MeshChild.start({ entry: fake('silent'), readyTimeoutMs: 300 }), (err: unknown) => err instanceof MeshChildError && err.exit === undefined);
    });

    it('refuses an entry that does not exist (dist/ not built)', async () => {
      await assert.rejects(MeshChild.start({ entry: [join(scripts, 'missing.js')] }), MeshChildError);
    });
  });

  describe('stop()', () => {
    it('kills a mesh that ignores SIGTERM after the stop timeout, removes its folder, and returns the same promise twice', async () => {
      const child = await MeshChild.start({ entry: fake('deaf'), stopTimeoutMs: 200 });
      const stopping = child.stop();
      assert.equal(child.stop(), stopping);
      await stopping;
      assert.equal(child.state, MeshChildState.EXITED);
      assert.ok(!existsSync(child.dataDir));
    });

    it('is what an aborted signal does', async () => {
      const controller = new AbortController();
      const child = await MeshChild.start({ entry: fake('ready'), signal: controller.signal });
      controller.abort();
      await child.closed;
      await child.stop();
      assert.ok(!existsSync(child.dataDir));
    });
  });

  describe('unexpectedExit()', () => {
    it('says that the mesh died while the benchmark used it, not after stop()', async () => {
      const child = await MeshChild.start({ entry: fake('ready') });
      process.kill(child.pid, 'SIGKILL');
      const cause = new Error('14 UNAVAILABLE');
      const died = await child.unexpectedExit(cause);
      assert.ok(died instanceof MeshChildError);
      assert.equal(died.exit, 'SIGKILL');
      assert.equal(died.cause, cause);
      await child.stop();
      assert.equal(await child.unexpectedExit(cause), undefined);
    });
  });
});

describe('withBenchTarget()', () => {
  // The real `stagemesh start` from dist/ (built by `make test` before mocha runs); one mesh, since starting one takes seconds.
  it('runs the workload against stagemesh in a separate process, then stops it and removes its folder even when the workload throws', async function () {
    this.timeout(90_000);
    let seen: BenchTarget | undefined;
    const failure = new Error('the workload failed');
    await assert.rejects(
      withBenchTarget(undefined, {}, async (target) => {
        seen = target;
        assert.equal(target.meshProcess, 'child');
        assert.notEqual(target.child!.pid, process.pid);
        const { runs } = await callUnary(target.clients.scheduler.listRuns.bind(target.clients.scheduler), { pageSize: 1, pageToken: '', pipelineName: '', state: 0 });
        assert.deepEqual(runs, []);
        // The memory the sustained mode reports is the mesh process's own.
        const metrics = await (await fetch(target.child!.metricsUrl)).text();
        assert.ok((prometheusValue(metrics, 'process_resident_memory_bytes') ?? 0) > 0);
        throw failure;
      }),
      (err: unknown) => err === failure,
    );
    assert.equal(seen!.child!.state, MeshChildState.EXITED);
    assert.ok(!existsSync(seen!.child!.dataDir));
  });
});
