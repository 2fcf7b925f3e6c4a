import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { runCli } from './support/cli.js';
import { inline, runToEnd, startTestMesh, type TestMesh } from './support/mesh.js';
import { childEnv, repoRoot } from './support/tools.js';

describe('cli - stagemesh metrics', function () {
  this.timeout(60_000);
  let t: TestMesh;

  before(async () => {
    t = await startTestMesh();
    await runToEnd(t.clients, inline('name: cli-metrics\nstages:\n  - { id: a, framework: noop }\n  - { id: b, framework: noop, needs: [a] }\n'));
  });

  after(async () => {
    await t?.destroy();
  });

  it('--once prints a table with throughput and latency percentiles per framework', async () => {
    // Both stages' events reach the metrics service asynchronously: poll until the row counts them.
    const row = /^noop\s+\d+(\.\d+)?\s+0\.00\s+2\s+0\s+0\s+\S+\/\S+\/\S+/m;
    const deadline = Date.now() + 10_000;
    let result = await runCli('--address', t.address, 'metrics', '--once');
    while (!row.test(result.stdout) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      result = await runCli('--address', t.address, 'metrics', '--once');
    }
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /window 1m, by framework/);
    assert.match(result.stdout, /GROUP\s+STAGES\/S\s+RUNS\/S\s+OK\s+FAILED\s+RETRIES\s+QUEUE ms\s+EXEC ms\s+E2E ms/);
    assert.match(result.stdout, row);
  });

  it('--once --json prints the Query answer, grouped as asked', async () => {
    const { code, stdout } = await runCli('--address', t.address, 'metrics', '--once', '--json', '--group-by', 'pipeline', '--window', '5m');
    assert.equal(code, 0);
    const answer = JSON.parse(stdout) as { window: string; series: { group: string; stagesSucceeded: number; runsFinished: number }[] };
    assert.equal(answer.window, '5m');
    const mine = answer.series.find((s) => s.group === 'cli-metrics');
    assert.deepEqual([mine?.stagesSucceeded, mine?.runsFinished], [2, 1]);
  });

  it('refuses a bad window or group-by with exit 2', async () => {
    assert.equal((await runCli('--address', t.address, 'metrics', '--window', '2m', '--once')).code, 2);
    const { code, stderr } = await runCli('--address', t.address, 'metrics', '--group-by', 'colour', '--once');
    assert.equal(code, 2);
    assert.match(stderr, /--group-by expects one of none, framework, node, pipeline/);
  });

  it('baseline set stores a baseline, list shows it, and bad values are refused by the service', async () => {
    const set = await runCli('--address', t.address, 'metrics', 'baseline', 'set', 'seed', '--stages-per-sec', '52.2', '--p95', '250ms');
    assert.equal(set.code, 0, set.stderr);
    assert.deepEqual(JSON.parse(set.stdout).p95Ms, 250);
    const list = await runCli('--address', t.address, 'metrics', 'baseline', 'list');
    assert.equal(list.code, 0);
    assert.deepEqual(
      list.stdout.trim().split('\n').map((l) => JSON.parse(l) as { name: string; stagesPerSec: number; tolerance: number }).map((b) => [b.name, b.stagesPerSec, b.tolerance]),
      [['seed', 52.2, 0.1]],
    );
    const bad = await runCli('--address', t.address, 'metrics', 'baseline', 'set', 'seed', '--stages-per-sec', '10', '--tolerance', '-1');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /INVALID_ARGUMENT: baseline\.tolerance: must be between 0 and 10/);
  });

  it('without --once streams a table at each interval until interrupted', async () => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin', 'stagemesh.js'), '--address', t.address, 'metrics', '--interval', '200ms'], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() });
    try {
      const out = await new Promise<string>((resolve, reject) => {
        let text = '';
        const timer = setTimeout(() => reject(new Error(`fewer than 3 tables in 20 s:\n${text}`)), 20_000);
        child.stdout.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          if ((text.match(/window 1m, by framework/g) ?? []).length >= 3) {
            clearTimeout(timer);
            resolve(text);
          }
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}:\n${text}`)));
      });
      assert.match(out, /^noop\s/m);
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
