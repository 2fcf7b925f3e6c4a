import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutcomeStatus, type Task } from '../../common/proto.js';
import { emptyEvidence, type AttemptControl, type AttemptResult, type FrameworkAdapter } from './framework-adapter.js';
import { runProcess, type ProcessResult } from './run-process.js';

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

/** The environment every process-based stage sees. */
export function stageEnvironment(task: Task, outputFile: string, env: Record<string, string> = {}): Record<string, string> {
  return {
    ...env,
    STAGEMESH_OUTPUT: outputFile,
    STAGEMESH_RUN_ID: task.runId,
    STAGEMESH_STAGE_ID: task.stageId,
    STAGEMESH_ATTEMPT: String(task.attempt),
  };
}

/**
 * Turns a finished process into an attempt result: success on exit 0 unless
 * `passed` says otherwise, timeouts and cancellations named in the evidence.
 */
export function processResult(task: Task, result: ProcessResult, passed = result.exitCode === 0): Pick<AttemptResult, 'status' | 'evidence'> {
  const evidence = emptyEvidence({ exitCode: result.exitCode, durationMs: result.durationMs, logTail: result.logTail });
  if (result.spawnError) evidence.error = `cannot start: ${result.spawnError.message}`;
  let status = passed ? OutcomeStatus.OUTCOME_STATUS_SUCCEEDED : OutcomeStatus.OUTCOME_STATUS_FAILED;
  if (result.stopReason === 'timeout') {
    status = OutcomeStatus.OUTCOME_STATUS_TIMED_OUT;
    evidence.error = `timed out after ${task.timeoutMs} ms`;
  } else if (result.stopReason === 'cancelled') {
    status = OutcomeStatus.OUTCOME_STATUS_CANCELLED;
    evidence.error = 'cancelled';
  }
  return { status, evidence };
}

/** Makes a private folder for one attempt (outputs, reports) and removes it afterwards. */
export async function withAttemptDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'stagemesh-attempt-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `run.command` with /bin/sh in its own process group. */
export class ShellAdapter implements FrameworkAdapter {
  readonly framework = 'shell';

  run(task: Task, attempt: AttemptControl): Promise<AttemptResult> {
    const spec = (task.run ?? {}) as { command?: string; cwd?: string; env?: Record<string, string> };
    return withAttemptDir(async (dir) => {
      const outputFile = join(dir, 'outputs');
      const result = await runProcess({ command: '/bin/sh', args: ['-c', spec.command ?? ''], cwd: spec.cwd, env: stageEnvironment(task, outputFile, spec.env), timeoutMs: task.timeoutMs, signal: attempt.signal });
      const outputs = parseOutputs(await readFile(outputFile, 'utf8').catch(() => ''), task.outputs);
      return { ...processResult(task, result), outputs };
    });
  }
}
