import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callUnary } from '../services/common/grpc-client.js';
import { runCli } from './support/cli.js';
import { startMeshProcess, type MeshProcess } from './support/mesh-process.js';
import { startTestMesh, type TestMesh } from './support/mesh.js';
import { childEnv, repoRoot } from './support/tools.js';

const cli = runCli;

const example = (name: string) => join(repoRoot, 'examples', name);

describe('cli - stagemesh commands against a running mesh', function () {
  let t: TestMesh;
  let address: string[];
  const scratch = mkdtempSync(join(tmpdir(), 'stagemesh-cli-'));

  before(async () => {
    t = await startTestMesh();
    address = ['--address', t.address];
  });

  after(async () => {
    await t?.destroy();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('run examples/hello.yaml exits 0 with a per-stage summary', async () => {
    const { code, stdout, stderr } = await cli(...address, 'run', example('hello.yaml'), '--wait');
    assert.equal(code, 0, stderr);
    assert.match(stdout, /hello@\S+ SUCCEEDED/);
    for (const stage of ['greet', 'build', 'report']) assert.match(stdout, new RegExp(`✓ ${stage}\\s+SUCCEEDED`));
    assert.match(stderr, /submitted/);
    // Live progress, from the run's events on the bus.
    assert.match(stderr, /… greet\s+QUEUED/);
    assert.match(stderr, /✓ report\s+SUCCEEDED/);
  });

  it('run exits 1 on a failing stage and shows its output tail', async () => {
    const { code, stdout } = await cli(...address, 'run', example('failing.yaml'));
    assert.equal(code, 1);
    assert.match(stdout, /stage check failed \(exit code 3\)/);
    assert.match(stdout, /disk quota exceeded/);
  });

  it('run --json prints the final run as proto3 JSON', async () => {
    const { code, stdout } = await cli(...address, 'run', example('hello.yaml'), '--json', '--input', 'who=json');
    assert.equal(code, 0);
    const run = JSON.parse(stdout);
    assert.equal(run.state, 'RUN_STATE_SUCCEEDED');
    assert.deepEqual(run.inputs, { who: 'json' });
    assert.equal(run.stages[0].outputs.version, '1.0.1');
  });

  it('run --detach prints the run id, and runs get/watch/list/cancel work on it', async () => {
    const sleepy = join(scratch, 'sleepy.yaml');
    writeFileSync(sleepy, 'name: sleepy\nstages:\n  - { id: nap, framework: shell, run: { command: sleep 20 } }\n');
    const detached = await cli(...address, 'run', sleepy, '--detach');
    assert.equal(detached.code, 0);
    const runId = detached.stdout.trim();
    assert.match(runId, /^[0-9a-f-]{36}$/);
    const got = await cli(...address, 'runs', 'get', runId, '--json');
    assert.equal(JSON.parse(got.stdout).runId, runId);
    const listed = await cli(...address, 'runs', 'list', '--limit', '50');
    assert.match(listed.stdout, new RegExp(`${runId}\\s+RUNNING\\s+sleepy@inline`));
    // Only one cli() at a time captures the output: cancel the watched run over gRPC.
    const watching = cli(...address, 'runs', 'watch', runId);
    await new Promise((r) => setTimeout(r, 200));
    await callUnary(t.clients.scheduler.cancelRun.bind(t.clients.scheduler), { runId, reason: 'no time' });
    const watched = await watching;
    assert.equal(watched.code, 1);
    assert.match(watched.stdout, /sleepy@inline CANCELLED/);
    assert.match(watched.stdout, /no time/);
    const second = (await cli(...address, 'run', sleepy, '--detach')).stdout.trim();
    const cancelled = await cli(...address, 'runs', 'cancel', second, '--reason', 'changed my mind');
    assert.equal(cancelled.code, 0);
    assert.match(cancelled.stdout, /CANCELLED/);
    assert.match(cancelled.stdout, /changed my mind/);
    const json = await cli(...address, 'runs', 'list', '--json', '--pipeline', 'sleepy');
    assert.equal(JSON.parse(json.stdout).runs[0].state, 'RUN_STATE_CANCELLED');
  });

  it('run refuses a cycle, naming the stages in it', async () => {
    const { code, stderr } = await cli(...address, 'run', example('cycle.yaml'));
    assert.equal(code, 1);
    assert.match(stderr, /INVALID_ARGUMENT: stages\[0\]\.needs: dependency cycle: a → c → b → a/);
  });

  it('validate exits 0 for a clean pipeline and 1 with findings naming the cycle', async () => {
    const clean = await cli(...address, 'validate', example('hello.yaml'));
    assert.equal(clean.code, 0);
    assert.match(clean.stdout, /hello\.yaml: ok/);
    const cycle = await cli(...address, 'validate', example('cycle.yaml'), example('hello.yaml'));
    assert.equal(cycle.code, 1);
    assert.match(cycle.stdout, /UCL2-cycle at stages\[0\]\.needs: dependency cycle: a → c → b → a/);
    assert.match(cycle.stdout, /fix: break the cycle/);
    const json = await cli(...address, 'validate', '--json', example('cycle.yaml'));
    assert.equal(JSON.parse(json.stdout)[0].report.findings[0].ruleId, 'UCL2-cycle');
    const local = await cli('validate', '--local', example('cycle.yaml'));
    assert.equal(local.code, 1);
  });

  it('validate exits by the gate: 1 below the threshold, 0 when passing with warnings, 2 on a bad policy', async () => {
    const terse = join(scratch, 'terse.yaml');
    writeFileSync(terse, 'name: terse\nstages:\n  - { id: a, framework: shell, run: { command: make } }\n');
    const below = await cli('validate', '--local', terse);
    assert.equal(below.code, 1);
    assert.match(below.stdout, /terse\.yaml: FAILED — score 0\.\d+ < threshold 0\.90/);
    assert.match(below.stdout, /stage a:\n/);
    assert.match(below.stdout, /note +COF09-timeout at stages\[0\]\.timeout: .*\n +fix: add timeout/);
    const audit = join(scratch, 'audit.yaml');
    writeFileSync(audit, 'enforcement: audit\n');
    const audited = await cli('validate', '--local', '--policy', audit, terse);
    assert.equal(audited.code, 0);
    assert.match(audited.stdout, /warning UCL3-owner at owner/);
    const viaMesh = await cli(...address, 'validate', '--policy', audit, '--json', terse);
    assert.equal(viaMesh.code, 0);
    assert.equal(JSON.parse(viaMesh.stdout)[0].report.enforcement, 'audit');
    const badPolicy = join(scratch, 'bad-policy.yaml');
    writeFileSync(badPolicy, 'threshold: 3\n');
    const refused = await cli('validate', '--local', '--policy', badPolicy, terse);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /threshold: expected a number from 0 to 1/);
  });

  it('exits 2 on usage errors and unreadable files', async () => {
    assert.equal((await cli(...address, 'validate', join(scratch, 'missing.yaml'))).code, 2);
    assert.match((await cli(...address, 'run', join(scratch, 'missing.yaml'))).stderr, /cannot read .*missing\.yaml: ENOENT/);
    assert.equal((await cli(...address, 'run', example('hello.yaml'), '--input', 'novalue')).code, 2);
    assert.equal((await cli(...address, 'run', example('hello.yaml'), '--priority', 'high')).code, 2);
    assert.equal((await cli(...address, 'runs', 'list', '--limit', '0')).code, 2);
    assert.equal((await cli('--no-such-flag')).code, 2);
    assert.equal((await cli('--help')).code, 0);
  });

  it('explains when no mesh answers at the address', async () => {
    const { code, stderr } = await cli('--address', '127.0.0.1:1', 'runs', 'list');
    assert.equal(code, 1);
    assert.match(stderr, /cannot reach stagemesh at 127\.0\.0\.1:1/);
    const unknown = await cli(...address, 'runs', 'get', 'no-such-run');
    assert.match(unknown.stderr, /NOT_FOUND: run "no-such-run" not found/);
  });
});

describe('cli - stagemesh start', function () {
  it('prints a ready line, serves, and exits 0 on SIGTERM after draining', async function () {
    this.timeout(60_000);
    const dataDir = mkdtempSync(join(tmpdir(), 'stagemesh-start-'));
    let mesh: MeshProcess | undefined;
    try {
      mesh = await startMeshProcess(dataDir);
      const { address: grpcAddress, healthUrl: http } = mesh;
      const health = await fetch(http);
      assert.equal(health.status, 200);
      const { code } = await cli('--address', grpcAddress, 'run', example('hello.yaml'));
      assert.equal(code, 0);
      assert.equal(await mesh.terminate(), 0);
    } finally {
      mesh?.child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('says which port is taken and exits 1 instead of hanging', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    const dataDir = mkdtempSync(join(tmpdir(), 'stagemesh-taken-'));
    try {
      const child = spawn(process.execPath, [join(repoRoot, 'bin', 'stagemesh.js'), 'start', '--grpc-port', String(port), '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      clearTimeout(timer);
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`gRPC port ${port} is already in use`));
    } finally {
      taken.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('refuses an invalid setting with exit 2 and names it', async () => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin', 'stagemesh.js'), 'start'], { env: childEnv({ STAGEMESH_GRPC_PORT: 'abc' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 2);
    assert.match(stderr, /STAGEMESH_GRPC_PORT: expected a port number/);
  });
});
