import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../services/common/paths.js';

/** Stages the child's local worker runs at once: enough that the worker never limits a noop workload. */
export const BENCH_WORKER_CAPACITY = 1024;
/** @default 60 s: a fresh mesh opens PGlite and applies its migrations first. */
export const DEFAULT_READY_TIMEOUT_MS = 60_000;
/** @default 30 s: the mesh drains running stages (at most its 10 s shutdown timeout) before it exits. */
export const DEFAULT_STOP_TIMEOUT_MS = 30_000;
/** Characters of the child's output kept to explain a failure. */
const OUTPUT_TAIL_CHARS = 4_000;

/** The state of a MeshChild: starting until its ready line, then running, stopping, and exited. */
export const MeshChildState = {
  STARTING: 'starting',
  RUNNING: 'running',
  STOPPING: 'stopping',
  EXITED: 'exited',
} as const;
export type MeshChildState = (typeof MeshChildState)[keyof typeof MeshChildState];

/** Options of MeshChild.start(). */
export interface MeshChildOptions {
  /**
   * The entry script and the arguments before the settings flags, run with
   * this Node executable. @default the `stagemesh start` command of this package (bin/stagemesh.js, running dist/)
   */
  entry?: string[];
  /** Variables added to the child's environment (the benchmark's own `STAGEMESH_*` and `OTEL_*` variables are not passed on). */
  env?: Record<string, string>;
  /** @default BENCH_WORKER_CAPACITY */
  workerCapacity?: number;
  /** How long to wait for the ready line. @default DEFAULT_READY_TIMEOUT_MS */
  readyTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before it sends SIGKILL. @default DEFAULT_STOP_TIMEOUT_MS */
  stopTimeoutMs?: number;
  /** Aborting it stops the child (Ctrl-C on the benchmark). */
  signal?: AbortSignal;
  /** Copy the child's standard error (its log lines, warn and above) to this process's. @default false */
  forwardStderr?: boolean;
}

/** The mesh process exited before it was asked to stop, or never became ready. */
export class MeshChildError extends Error {
  override readonly name = 'MeshChildError';
  constructor(
    message: string,
    /** The child's exit code, or the signal that ended it; undefined while it still runs. */
    readonly exit: number | NodeJS.Signals | undefined,
    /** The end of what it printed on stdout and stderr. */
    readonly outputTail: string,
    options?: ErrorOptions,
  ) {
    super(outputTail.trim() ? `${message}; its last output:\n${outputTail.trim()}` : message, options);
  }
}

/** The command that starts the mesh, as users run it. */
function defaultEntry(): string[] {
  return [join(packageRoot(), 'bin', 'stagemesh.js'), 'start'];
}

/**
 * The child's environment: this process's, without the variables that would
 * configure it differently from the benchmark's settings (a `STAGEMESH_CONFIG`
 * file, a database URL, tracing) or collect coverage of it, plus `extra`.
 */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('STAGEMESH_') && !key.startsWith('OTEL_') && key !== 'NODE_V8_COVERAGE') env[key] = value;
  }
  return { ...env, ...extra };
}

/**
 * The mesh a benchmark measures, in a process of its own so that the load
 * generator does not share its event loop: `stagemesh start` on free ports
 * (gRPC and HTTP port 0), a temporary data folder, log level warn and a
 * worker capacity of 1024. start() resolves once the child has printed its
 * ready line (which names the ports it bound); stop() ends it with SIGTERM,
 * then SIGKILL if it has not exited in time, and removes the data folder. If
 * this process exits first, the child is killed and the folder removed.
 */
export class MeshChild {
  #state: MeshChildState = MeshChildState.STARTING;
  #stopping?: Promise<void>;
  #exit: number | NodeJS.Signals | undefined;
  #output = '';
  readonly #exited: Promise<void>;
  readonly #killOnExit = () => this.#killNow();
  readonly #onAbort = () => void this.stop();

  /** gRPC address of the five services, "127.0.0.1:port". */
  address = '';
  /** Prometheus text endpoint of the child's HTTP edge (its `process_*` samples are the child's). */
  metricsUrl = '';

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    /** The temporary data folder, removed by stop(). */
    readonly dataDir: string,
    private readonly options: { stopTimeoutMs: number; signal?: AbortSignal; forwardStderr?: boolean },
  ) {
    const keep = (chunk: Buffer) => (this.#output = (this.#output + chunk.toString()).slice(-OUTPUT_TAIL_CHARS));
    // Both pipes are always read, so a chatty child never blocks on a full pipe.
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    if (options.forwardStderr) child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    this.#exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.#exit = code ?? signal ?? undefined;
        this.#state = MeshChildState.EXITED;
        resolve();
      }),
    );
    process.once('exit', this.#killOnExit);
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /**
   * Starts the mesh process and waits for its ready line.
   * @throws MeshChildError when it exits or stays silent for `readyTimeoutMs` (it is killed and its folder removed then),
   *   or the AbortSignal's reason when `signal` aborts first.
   */
  static async start(options: MeshChildOptions = {}): Promise<MeshChild> {
    options.signal?.throwIfAborted();
    const entry = options.entry ?? defaultEntry();
    if (!existsSync(entry[0]!)) throw new MeshChildError(`cannot start the mesh: ${entry[0]} is missing (run \`npm run build\`)`, undefined, '');
    const dataDir = mkdtempSync(join(tmpdir(), 'stagemesh-bench-'));
    const settings = ['--grpc-port', '0', '--http-port', '0', '--data-dir', dataDir, '--log-level', 'warn', '--worker-capacity', String(options.workerCapacity ?? BENCH_WORKER_CAPACITY)];
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn(process.execPath, [...entry, ...settings], { stdio: 'pipe', env: childEnv(options.env ?? {}) });
    } catch (err) {
      rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
    child.stdin.end();
    const mesh = new MeshChild(child, dataDir, { stopTimeoutMs: options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS, signal: options.signal, forwardStderr: options.forwardStderr });
    try {
      await mesh.#ready(options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
    } catch (err) {
      await mesh.stop();
      throw options.signal?.aborted ? options.signal.reason : err;
    }
    return mesh;
  }

  /** Waits for `stagemesh ready … gRPC host:port … HTTP http://host:port/healthz` on stdout. */
  async #ready(timeoutMs: number): Promise<void> {
    const child = this.child;
    let stdout = '';
    let timer: NodeJS.Timeout | undefined;
    let onData: ((chunk: Buffer) => void) | undefined;
    try {
      // One promise for the three outcomes: a later exit or timeout cannot reject anything once it settled.
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => reject(new MeshChildError(`the mesh process printed no ready line in ${timeoutMs} ms`, undefined, this.#output)), timeoutMs);
        void this.#exited.then(() => reject(new MeshChildError(`the mesh process exited (${this.#exit}) before it was ready`, this.#exit, this.#output)));
        onData = (chunk) => {
          stdout += chunk.toString();
          const line = stdout.split('\n').find((l) => l.startsWith('stagemesh ready'));
          if (!line) return;
          const grpc = /gRPC (\S+:\d+)/.exec(line)?.[1];
          const http = /HTTP (https?:\/\/\S+?)\/healthz/.exec(line)?.[1];
          if (!grpc || !http) return reject(new MeshChildError(`the mesh printed a ready line without its ports: ${line}`, undefined, this.#output));
          this.address = grpc;
          this.metricsUrl = `${http}/metrics`;
          resolve();
        };
        child.stdout.on('data', onData);
      });
      this.#state = MeshChildState.RUNNING;
    } finally {
      clearTimeout(timer);
      if (onData) child.stdout.off('data', onData);
    }
  }

  get state(): MeshChildState {
    return this.#state;
  }

  /** Process id of the child. */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Resolves once the child has exited; never rejects. */
  get closed(): Promise<void> {
    return this.#exited;
  }

  /**
   * Why the child is gone if it exited before stop() was called (it crashed
   * or was killed from outside), else undefined; `cause` is the error the
   * benchmark saw then. Waits up to `waitMs` for the exit to be reported,
   * because a closed connection is usually noticed before the exit.
   */
  async unexpectedExit(cause?: unknown, waitMs = 1_000): Promise<MeshChildError | undefined> {
    if (this.#stopping) return undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
    if (this.#state !== MeshChildState.EXITED || this.#stopping) return undefined;
    return new MeshChildError(`the mesh process (pid ${this.pid}) exited (${this.#exit}) while the benchmark used it`, this.#exit, this.#output, { cause });
  }

  /**
   * Stops the child: SIGTERM (the mesh drains and exits), SIGKILL after
   * `stopTimeoutMs`, then removes the data folder. Safe to call twice;
   * returns the same promise; never rejects.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.options.signal?.removeEventListener('abort', this.#onAbort);
      if (this.#state !== MeshChildState.EXITED) {
        this.#state = MeshChildState.STOPPING;
        this.child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const inTime = await Promise.race([this.#exited.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.options.stopTimeoutMs)))]);
        clearTimeout(timer);
        if (!inTime) {
          this.child.kill('SIGKILL');
          await this.#exited;
        }
      }
      process.off('exit', this.#killOnExit);
      rmSync(this.dataDir, { recursive: true, force: true });
    })();
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Last resort when this process exits with the child still running: no waiting is possible then. */
  #killNow(): void {
    if (this.#state !== MeshChildState.EXITED) this.child.kill('SIGKILL');
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
