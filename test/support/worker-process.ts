import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { childEnv, repoRoot } from './tools.js';

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A `stagemesh worker` process started by a test. */
export interface WorkerProcess {
  child: ChildProcess;
  nodeId: string;
  /** Stops it (SIGTERM, then SIGKILL after 5 s); safe to call twice and after it died. */
  stop(): Promise<void>;
}

/** Starts `stagemesh worker` against `address` and waits for its ready line (bounded). */
export async function startWorkerProcess(address: string, nodeId: string, args: string[] = []): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'stagemesh.js'), '--address', address, 'worker', '--node-id', nodeId, '--log-level', 'warn', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: childEnv(),
    // Its own process group, so stopping it also ends the stages it runs.
    detached: true,
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker ${nodeId} not ready in 20 s:\n${output}`)), 20_000);
    const check = () => {
      if (/ready/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker ${nodeId} exited with ${code}:\n${output}`));
    });
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.pid && process.kill(-child.pid, 'SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  return { child, nodeId, stop };
}
