import { spawn } from 'node:child_process';
import { TailBuffer } from './tail-buffer.js';

/** How long the output pipes may stay open after the stage's process exited. */
const OUTPUT_GRACE_MS = 500;

/** How long a stopped stage gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2_000;

export interface ProcessResult {
  /** Exit code; 128 + n when killed by signal n is not known, -1 when it could not start. */
  exitCode: number;
  /** Why stagemesh stopped the process, if it did. */
  stopReason?: 'timeout' | 'cancelled';
  /** The last bytes of standard output and error, interleaved as written. */
  logTail: string;
  durationMs: number;
  /** Set when the program could not be started at all. */
  spawnError?: Error;
}

export interface ProcessOptions {
  command: string;
  args: readonly string[];
  cwd?: string;
  env?: Record<string, string>;
  /** 0 means no limit. */
  timeoutMs: number;
  signal: AbortSignal;
}

function killGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // The group is already gone.
  }
}

/**
 * Runs a program in its own process group, so a timeout or a cancellation
 * (SIGTERM, then SIGKILL after a grace period) ends it and everything it
 * started. Resolves when it has exited; never rejects.
 */
export async function runProcess(options: ProcessOptions): Promise<ProcessResult> {
  const started = Date.now();
  const tail = new TailBuffer();
  const child = spawn(options.command, options.args, {
    cwd: options.cwd || process.cwd(),
    env: { ...process.env, ...options.env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  child.stdout.on('data', (c: Buffer) => tail.push(c));
  child.stderr.on('data', (c: Buffer) => tail.push(c));
  let stopReason: ProcessResult['stopReason'];
  let killTimer: NodeJS.Timeout | undefined;
  const stop = (reason: 'timeout' | 'cancelled') => {
    if (stopReason || child.exitCode !== null || child.signalCode !== null) return;
    stopReason = reason;
    killGroup(child.pid, 'SIGTERM');
    killTimer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS);
  };
  const timeout = options.timeoutMs > 0 ? setTimeout(() => stop('timeout'), options.timeoutMs) : undefined;
  const onAbort = () => stop('cancelled');
  options.signal.addEventListener('abort', onAbort, { once: true });
  if (options.signal.aborted) onAbort();
  // 'exit', not 'close': a background process started by the stage may hold
  // the output pipes open long after the stage itself has ended.
  const { exitCode, spawnError } = await new Promise<{ exitCode: number; spawnError?: Error }>((resolve) => {
    child.once('error', (err) => resolve({ exitCode: -1, spawnError: err }));
    child.once('exit', (code, sig) => resolve({ exitCode: code ?? (sig ? 128 : -1) }));
  });
  clearTimeout(timeout);
  clearTimeout(killTimer);
  options.signal.removeEventListener('abort', onAbort);
  // The program is gone while children it started may still run: end the group,
  // then give the pipes a moment to deliver the last output before closing them.
  killGroup(child.pid, 'SIGKILL');
  if (!spawnError) {
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((resolve) => (grace = setTimeout(resolve, OUTPUT_GRACE_MS)))]);
    clearTimeout(grace);
  }
  child.stdout.destroy();
  child.stderr.destroy();
  return { exitCode, stopReason, logTail: tail.toString(), durationMs: Date.now() - started, spawnError };
}
