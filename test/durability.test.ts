import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callUnary, createMeshClients } from '../services/common/grpc-client.js';
import { GetRunRequest, RunAndWaitRequest, RunState } from '../services/common/proto.js';
import { inline } from './support/mesh.js';
import { childEnv, repoRoot } from './support/tools.js';

/** Starts `stagemesh start` on free ports in `dataDir`; resolves with the process and its gRPC address. */
async function startMeshProcess(dataDir: string): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'stagemesh.js'), 'start', '--grpc-port', '0', '--http-port', '0', '--data-dir', dataDir, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() });
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no ready line in 45 s:\n${out}`)), 45_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const port = /gRPC 127\.0\.0\.1:(\d+)/.exec(out)?.[1];
      if (port) {
        clearTimeout(timer);
        resolve(`127.0.0.1:${port}`);
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}:\n${out}`)));
  });
  return { child, address };
}

describe('durability - kill -9 of the embedded mesh', function () {
  this.timeout(120_000);
  const dataDir = mkdtempSync(join(tmpdir(), 'stagemesh-kill9-'));
  const children: ChildProcess[] = [];

  after(() => {
    for (const child of children) child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps every run reported SUCCEEDED when the mesh is killed right after', async () => {
    const first = await startMeshProcess(dataDir);
    children.push(first.child);
    const clients = createMeshClients(first.address);
    const document = 'name: durable\nstages:\n  - { id: a, framework: noop }\n  - { id: b, framework: noop, needs: [a] }';
    // Many runs finishing together, so the kill lands among group commits.
    const results = await Promise.all(
      Array.from({ length: 50 }, () => callUnary(clients.scheduler.runAndWait.bind(clients.scheduler), RunAndWaitRequest.fromPartial({ submit: inline(document), waitTimeout: '30s' }), { timeoutMs: 40_000 })),
    );
    first.child.kill('SIGKILL');
    clients.close();
    await new Promise((r) => first.child.once('exit', r));
    const succeeded = results.filter((r) => r.run!.state === RunState.RUN_STATE_SUCCEEDED).map((r) => r.run!.runId);
    assert.equal(succeeded.length, 50);

    const second = await startMeshProcess(dataDir);
    children.push(second.child);
    const again = createMeshClients(second.address);
    try {
      for (const runId of succeeded) {
        const { run } = await callUnary(again.scheduler.getRun.bind(again.scheduler), GetRunRequest.fromPartial({ runId }));
        assert.equal(run!.state, RunState.RUN_STATE_SUCCEEDED, `run ${runId} lost its outcome`);
      }
    } finally {
      again.close();
      second.child.kill('SIGTERM');
      await new Promise((r) => second.child.once('exit', r));
    }
  });
});
