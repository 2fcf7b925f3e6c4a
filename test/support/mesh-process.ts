import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { childEnv, repoRoot } from './tools.js';

/** A `stagemesh start` process on free ports, once it printed its ready line. */
export interface MeshProcess {
  child: ChildProcessWithoutNullStreams;
  /** What it printed up to its ready line. */
  ready: string;
  /** gRPC address, "127.0.0.1:port". */
  address: string;
  /** The /healthz URL of its HTTP edge. */
  healthUrl: string;
  /** Sends SIGTERM and resolves to the exit code once the mesh has drained and exited. */
  terminate(): Promise<number | null>;
}

/**
 * Spawns `node bin/stagemesh.js start` (the built dist/) on free ports in
 * `dataDir`, with `env` added to the environment, and waits (bounded) for its
 * ready line. The caller stops the child.
 */
export async function startMeshProcess(dataDir: string, env: Record<string, string> = {}, timeoutMs = 45_000): Promise<MeshProcess> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'stagemesh.js'), 'start', '--grpc-port', '0', '--http-port', '0', '--data-dir', dataDir, '--log-level', 'warn'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: childEnv(env),
  });
  child.stdin.end();
  try {
    const ready = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`no ready line in ${timeoutMs} ms; output so far:\n${out}`)), timeoutMs);
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (/ready/.test(out)) {
          clearTimeout(timer);
          resolve(out);
        }
      });
      child.once('exit', (code) => reject(new Error(`exited ${code} before ready:\n${out}`)));
    });
    const grpc = /gRPC 127\.0\.0\.1:(\d+)/.exec(ready)?.[1];
    const health = /HTTP (http:\/\/127\.0\.0\.1:\d+\/healthz)/.exec(ready)?.[1];
    if (!grpc || !health) throw new Error(`unexpected ready line: ${ready}`);
    const terminate = () => {
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      return exited;
    };
    return { child, ready, address: `127.0.0.1:${grpc}`, healthUrl: health, terminate };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}
