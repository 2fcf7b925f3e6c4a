import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutcomeStatus, Task } from '../../common/proto.js';
import { AttemptControl } from './framework-adapter.js';
import { HttpAdapter } from './http-adapter.js';
import { parseOutputs, ShellAdapter } from './shell-adapter.js';
import { SleepAdapter } from './sleep-adapter.js';
import { TailBuffer } from './tail-buffer.js';

const task = (run: Record<string, unknown>, fields: Partial<Task> = {}): Task =>
  Task.fromPartial({ attemptId: 'a1', runId: 'r1', stageId: 's1', framework: 'shell', run, attempt: 1, pipelineName: 'p', ...fields });

describe('ShellAdapter', () => {
  const shell = new ShellAdapter();

  it('succeeds on exit 0 and keeps the output tail', async () => {
    const result = await shell.run(task({ command: 'echo out; echo err >&2' }), new AttemptControl());
    assert.equal(result.status, OutcomeStatus.OUTCOME_STATUS_SUCCEEDED);
    assert.equal(result.evidence.exitCode, 0);
    assert.match(result.evidence.logTail, /out\nerr/);
  });

  it('fails with the exit code of the command', async () => {
    const result = await shell.run(task({ command: 'exit 7' }), new AttemptControl());
    assert.equal(result.status, OutcomeStatus.OUTCOME_STATUS_FAILED);
    assert.equal(result.evidence.exitCode, 7);
  });

  it('collects declared outputs written to $STAGEMESH_OUTPUT, with env and cwd applied', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'stagemesh-cwd-'));
    const result = await shell.run(
      task({ command: 'echo "version=$V" >> "$STAGEMESH_OUTPUT"; echo "dir=$(pwd)" >> "$STAGEMESH_OUTPUT"; echo "other=x" >> "$STAGEMESH_OUTPUT"', env: { V: '9' }, cwd }, { outputs: ['version', 'dir'] }),
      new AttemptControl(),
    );
    assert.deepEqual(result.outputs, { version: '9', dir: cwd });
  });

  it('kills the whole process group when the stage times out', async () => {
    const marker = join(mkdtempSync(join(tmpdir(), 'stagemesh-kill-')), 'survived');
    const started = Date.now();
    const result = await shell.run(task({ command: `(sleep 1; touch ${marker}) & sleep 5` }, { timeoutMs: 200 }), new AttemptControl());
    assert.equal(result.status, OutcomeStatus.OUTCOME_STATUS_TIMED_OUT);
    assert.ok(Date.now() - started < 3000);
    await sleep(1200);
    assert.equal(existsSync(marker), false, 'a child of the stage outlived the timeout');
  });

  it('stops a cancelled stage', async () => {
    const attempt = new AttemptControl();
    setTimeout(() => attempt.cancel(), 100);
    const result = await shell.run(task({ command: 'sleep 5' }), attempt);
    assert.equal(result.status, OutcomeStatus.OUTCOME_STATUS_CANCELLED);
  });
});

describe('parseOutputs()', () => {
  it('keeps every KEY=VALUE line when none are declared', () => {
    assert.deepEqual(parseOutputs('a=1\nnoise\nb=x=y\r\n=bad\n', []), { a: '1', b: 'x=y' });
  });
});

describe('TailBuffer', () => {
  it('keeps the last bytes and marks what it dropped', () => {
    const tail = new TailBuffer(8);
    for (const chunk of ['0123', '4567', '89ab']) tail.push(Buffer.from(chunk));
    assert.equal(tail.toString(), '…456789ab');
  });
});

describe('SleepAdapter', () => {
  it('waits for sleep stages and can be cancelled', async () => {
    const sleeper = new SleepAdapter('sleep');
    const done = await sleeper.run(task({ duration: '20ms' }, { framework: 'sleep' }), new AttemptControl());
    assert.equal(done.status, OutcomeStatus.OUTCOME_STATUS_SUCCEEDED);
    const attempt = new AttemptControl();
    setTimeout(() => attempt.cancel(), 20);
    const cancelled = await sleeper.run(task({ duration: '5s' }, { framework: 'sleep' }), attempt);
    assert.equal(cancelled.status, OutcomeStatus.OUTCOME_STATUS_CANCELLED);
    assert.equal((await new SleepAdapter('noop').run(task({}), new AttemptControl())).status, OutcomeStatus.OUTCOME_STATUS_SUCCEEDED);
  });
});

describe('HttpAdapter', () => {
  const http = new HttpAdapter();

  it('fails with the reason when nothing listens', async () => {
    const result = await http.run(task({ url: 'http://127.0.0.1:1/' }, { framework: 'http' }), new AttemptControl());
    assert.equal(result.status, OutcomeStatus.OUTCOME_STATUS_FAILED);
    assert.match(result.evidence.error, /127\.0\.0\.1:1/);
  });
});
