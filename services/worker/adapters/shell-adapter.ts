import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutcomeStatus, type Task } from '../../common/proto.js';
import { emptyEvidence, type AttemptResult, type FrameworkAdapter } from './framework-adapter.js';
import { TailBuffer } from './tail-buffer.js';

/** How long a stopped stage gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2_000;

/** Parses KEY=VALUE lines written to $STAGEMESH_OUTPUT; keeps declared names only when some are declared. */
export function parseOutputs(text: string, declared: readonly string[]): Record<string, string> {
  const outputs: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    if (declared.length === 0 || declared.includes(key)) outputs[key] = line.slice(eq + 1).replace(/\r$/, '');
  }
  return outputs;
}

/**
 * Runs `run.command` with /bin/sh in its own process group, so a timeout or a
 * cancellation kills the command and everything it started.
 */
export class ShellAdapter implements FrameworkAdapter {
  readonly framework = 'shell';

  async run(task: Task, signal: AbortSignal): Promise<AttemptResult> {
    const spec = (task.run ?? {}) as { command?: string; cwd?: string; env?: Record<string, string> };
    const started = Date.now();
    const dir = await mkdtemp(join(tmpdir(), 'stagemesh-attempt-'));
    const outputFile = join(dir, 'outputs');
    const tail = new TailBuffer();
    try {
      const child = spawn('/bin/sh', ['-c', spec.command ?? ''], {
        cwd: spec.cwd || process.cwd(),
        env: {
          ...process.env,
          ...spec.env,
          STAGEMESH_OUTPUT: outputFile,
          STAGEMESH_RUN_ID: task.runId,
          STAGEMESH_STAGE_ID: task.stageId,
          STAGEMESH_ATTEMPT: String(task.attempt),
        },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.on('data', (c: Buffer) => tail.push(c));
      child.stderr.on('data', (c: Buffer) => tail.push(c));
      let stopReason: 'timeout' | 'cancelled' | undefined;
      let killTimer: NodeJS.Timeout | undefined;
      const stop = (reason: 'timeout' | 'cancelled') => {
        if (stopReason || child.exitCode !== null) return;
        stopReason = reason;
        killGroup(child.pid, 'SIGTERM');
        killTimer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS);
      };
      const timeout = task.timeoutMs > 0 ? setTimeout(() => stop('timeout'), task.timeoutMs) : undefined;
      const onAbort = () => stop('cancelled');
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) onAbort();
      const { code, spawnError } = await new Promise<{ code: number; spawnError?: Error }>((resolve) => {
        child.once('error', (err) => resolve({ code: -1, spawnError: err }));
        child.once('close', (exitCode, sig) => resolve({ code: exitCode ?? (sig ? 128 : -1) }));
      });
      clearTimeout(timeout);
      clearTimeout(killTimer);
      signal.removeEventListener('abort', onAbort);
      // The shell may be gone while children it started still run: end the group.
      killGroup(child.pid, 'SIGKILL');
      const evidence = emptyEvidence({ exitCode: code, durationMs: Date.now() - started, logTail: tail.toString() });
      if (spawnError) evidence.error = `cannot start /bin/sh: ${spawnError.message}`;
      let status = code === 0 ? OutcomeStatus.OUTCOME_STATUS_SUCCEEDED : OutcomeStatus.OUTCOME_STATUS_FAILED;
      if (stopReason === 'timeout') {
        status = OutcomeStatus.OUTCOME_STATUS_TIMED_OUT;
        evidence.error = `timed out after ${task.timeoutMs} ms`;
      } else if (stopReason === 'cancelled') {
        status = OutcomeStatus.OUTCOME_STATUS_CANCELLED;
        evidence.error = 'cancelled';
      }
      const outputs = parseOutputs(await readFile(outputFile, 'utf8').catch(() => ''), task.outputs);
      return { status, evidence, outputs };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

function killGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // The group is already gone.
  }
}
