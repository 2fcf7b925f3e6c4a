import { cpus } from 'node:os';
import { createMeshClients, type MeshClients } from '../services/common/grpc-client.js';
import { RunView } from '../services/common/proto.js';
import { measureEventLatency } from './event-latency.js';
import { MeshChild, type MeshChildOptions } from './mesh-child.js';
import { measureObservabilityOverhead } from './observability-overhead.js';
import { benchValidate1000 } from './validate.js';
import { awaitFinishedRuns, chainDocument, fanoutDocument, percentile, registered, runAndWait, sleepDocument, submitAll } from './workloads.js';

export interface BenchOptions {
  /** Drive a running mesh instead of starting one. */
  address?: string;
  /** Called with a line of progress (for a terminal). */
  progress?: (line: string) => void;
  /** Workloads to run; all by default. */
  only?: string[];
  /** Aborting it (Ctrl-C) stops the mesh the benchmark started, which ends the workload with an error. */
  signal?: AbortSignal;
  /**
   * `distributed`: `address` is a cluster found through Consul (make cluster),
   * and only the workloads that drive the mesh run unless `only` names others
   * (the rest measure parts of stagemesh in this process). @default "embedded"
   */
  profile?: BenchProfile;
}

export const BENCH_PROFILES = ['embedded', 'distributed'] as const;
export type BenchProfile = (typeof BENCH_PROFILES)[number];

/** The machine a result was measured on. */
export function machine() {
  return { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, platform: `${process.platform}-${process.arch}` };
}

/**
 * Where the measured mesh runs, `mesh_process` in the JSON: `child`, a
 * `stagemesh start` process the benchmark started (so the load generator and
 * the mesh do not share an event loop), or `remote`, the mesh at `--address`.
 */
export const MeshProcess = { CHILD: 'child', REMOTE: 'remote' } as const;
export type MeshProcess = (typeof MeshProcess)[keyof typeof MeshProcess];

/** A mesh being measured and the benchmark's clients of it. */
export interface BenchTarget {
  clients: MeshClients;
  meshProcess: MeshProcess;
  /** The mesh process the benchmark started (not with an address). */
  child?: MeshChild;
  /** Stops what the benchmark started (the child, its data folder) and closes the clients; safe to call twice. */
  close(): Promise<void>;
}

/** Options of benchTarget(). */
export interface BenchTargetOptions {
  /** How the child is started (entry, environment). */
  child?: Omit<MeshChildOptions, 'signal'>;
  /** Aborting it stops the child. */
  signal?: AbortSignal;
}

/**
 * A mesh to measure: the one at `address`, or a fresh embedded mesh started
 * as a child process (MeshChild: `stagemesh start` on free ports in a
 * temporary folder), driven over gRPC just like a remote one.
 */
export async function benchTarget(address: string | undefined, options: BenchTargetOptions = {}): Promise<BenchTarget> {
  if (address) {
    const clients = createMeshClients(address);
    return { clients, meshProcess: MeshProcess.REMOTE, close: async () => clients.close() };
  }
  // The mesh's warnings reach the terminal as they did when it ran in this process.
  const child = await MeshChild.start({ forwardStderr: true, ...options.child, signal: options.signal });
  const clients = createMeshClients(child.address);
  let closing: Promise<void> | undefined;
  return {
    clients,
    meshProcess: MeshProcess.CHILD,
    child,
    close: () =>
      (closing ??= (async () => {
        clients.close();
        await child.stop();
      })()),
  };
}

/**
 * Runs `work` against a bench target and closes the target afterwards,
 * whether `work` succeeds, throws, or `signal` aborts. When the mesh process
 * died under the work, the error says so (with its last output) instead of
 * the gRPC error that followed.
 */
export async function withBenchTarget<T>(address: string | undefined, options: BenchTargetOptions, work: (target: BenchTarget) => Promise<T>): Promise<T> {
  const target = await benchTarget(address, options);
  try {
    return await work(target);
  } catch (err) {
    throw (await target.child?.unexpectedExit(err)) ?? err;
  } finally {
    await target.close();
  }
}

const unique = (name: string) => `${name}-${Date.now().toString(36)}`;

/**
 * 1,000 runs of a registered 4-stage noop chain submitted concurrently (by
 * name, as a deployed pipeline is): stages per second from first submit to last finish.
 */
export async function chain(clients: MeshClients, runs = 1000, length = 4): Promise<number> {
  const submit = await registered(clients, chainDocument(unique('bench-chain'), length));
  const waiter = awaitFinishedRuns(clients, submit.pipelineRef!, runs, 300_000);
  await waiter.ready;
  const started = performance.now();
  // Together, so that a failed submit does not leave the waiter's rejection unhandled.
  await Promise.all([submitAll(clients, Array.from({ length: runs }, () => submit)), waiter.done]);
  return (runs * length) / ((performance.now() - started) / 1000);
}

/**
 * One run of a registered pipeline of 1 → 1,000 → 1 noop stages. It asks for
 * the run's basic view, as the scaling workload does: both measure how fast
 * the stages run, and a caller who only waits for a run's state gets it
 * without its stages (reading 1,000 or 5,000 stages back is GetRun's cost).
 */
async function fanout(clients: MeshClients, width = 1000): Promise<number> {
  const { ms, succeeded } = await runAndWait(clients, await registered(clients, fanoutDocument(unique('bench-fanout'), width)), { view: RunView.RUN_VIEW_BASIC });
  if (!succeeded) throw new Error('the fan-out run did not succeed');
  return (width + 2) / (ms / 1000);
}

/** RunAndWait calls per concurrency level of the scaling workload; the level reports their median. */
const SCALING_SAMPLES = 3;

/**
 * Sleep-50ms stages of a registered pipeline at a concurrency (the run's basic
 * view, as for the fan-out): efficiency =
 * ideal time ÷ measured time (5 waves), the median of SCALING_SAMPLES runs
 * after one uncounted warm-up run, as the fan-out has its warm-up rounds
 * (each run lasts a quarter of a second, so one hiccup of the machine would
 * otherwise decide a level); `samples` lists them all.
 */
async function scaling(clients: MeshClients, levels = [1, 5, 10, 20, 100, 1000], progress?: (line: string) => void) {
  const results: { concurrency: number; efficiency: number; samples: number[] }[] = [];
  for (const concurrency of levels) {
    const waves = 5;
    const submit = await registered(clients, sleepDocument(unique(`bench-scale-${concurrency}`), concurrency * waves, concurrency, '50ms'));
    // One run first, not counted: the first run of a new pipeline costs more (the scheduler's and admission's per-definition work).
    await runAndWait(clients, submit, { view: RunView.RUN_VIEW_BASIC });
    const samples: number[] = [];
    for (let i = 0; i < SCALING_SAMPLES; i++) {
      const { ms, succeeded } = await runAndWait(clients, submit, { view: RunView.RUN_VIEW_BASIC });
      if (!succeeded) throw new Error(`the scaling run at concurrency ${concurrency} did not succeed`);
      samples.push(Number(Math.min(1, (waves * 50) / ms).toFixed(3)));
    }
    const efficiency = percentile(samples, 50);
    results.push({ concurrency, efficiency, samples });
    progress?.(`scaling: concurrency ${concurrency} efficiency ${efficiency} (${samples.join(', ')})`);
  }
  return results;
}

/** Warm-up rounds of a workload at most, and how close two rounds in a row must be to end them. */
const WARMUP_MAX_ROUNDS = 6;
const WARMUP_STEADY = 0.05;

/**
 * Runs a throughput workload until two rounds in a row are within 5 % of
 * each other, at most 6 rounds, so that its measurement afterwards sees a
 * mesh whose code for it is compiled and optimised (JavaScript and PGlite's
 * WebAssembly alike), as a mesh that has been running is. Returns each
 * round's stages per second: the first is the cold figure.
 */
export async function warmUp(name: string, workload: () => Promise<number>, progress?: (line: string) => void): Promise<number[]> {
  const rounds: number[] = [];
  while (rounds.length < WARMUP_MAX_ROUNDS) {
    rounds.push(Math.round(await workload()));
    progress?.(`warming up ${name}: round ${rounds.length}, ${rounds.at(-1)} stages/s`);
    const [previous, last] = rounds.slice(-2);
    if (previous !== undefined && Math.abs(last! - previous) <= WARMUP_STEADY * previous) break;
  }
  return rounds;
}

/** RunAndWait of a registered noop chain of `length` stages, one run at a time: each of `samples` runs' milliseconds, after 10 runs of warm-up. */
export async function runAndWaitSamples(clients: MeshClients, length: number, samples: number): Promise<number[]> {
  const submit = await registered(clients, chainDocument(unique('bench-rw'), length));
  for (let i = 0; i < 10; i++) await runAndWait(clients, submit); // warm-up
  const ms: number[] = [];
  for (let i = 0; i < samples; i++) ms.push((await runAndWait(clients, submit)).ms);
  return ms;
}

/** RunAndWait latency of a 3-stage noop chain, one run at a time. */
async function runAndWaitLatency(clients: MeshClients, samples = 200) {
  const ms = await runAndWaitSamples(clients, 3, samples);
  return { p50: Number(percentile(ms, 50).toFixed(2)), p99: Number(percentile(ms, 99).toFixed(2)) };
}

/** Workloads that drive the mesh (the others measure parts of it in this process, or start meshes of their own). */
const MESH_WORKLOADS = ['chain', 'fanout', 'scaling', 'run_and_wait'];

/** Runs the benchmark and returns one JSON-ready object. */
export async function runBench(options: BenchOptions = {}): Promise<Record<string, unknown>> {
  const progress = options.progress ?? (() => undefined);
  const distributed = options.profile === 'distributed';
  const want = (name: string) => (options.only ? options.only.includes(name) : !distributed || MESH_WORKLOADS.includes(name));
  const result: Record<string, unknown> = {
    profile: distributed ? `distributed ${options.address}` : options.address ? `remote ${options.address}` : 'embedded',
    mesh_process: options.address ? MeshProcess.REMOTE : MeshProcess.CHILD,
    machine: machine(),
  };
  if (MESH_WORKLOADS.some(want)) {
    if (!options.address) progress('starting the mesh process');
    await withBenchTarget(options.address, { signal: options.signal }, async (target) => {
      // Every workload is measured on a warm mesh: the chain rounds warm what all of them share.
      const warmup: Record<string, number[]> = { chain: await warmUp('chain', () => chain(target.clients), progress) };
      result.warmup_stages_per_sec = warmup;
      if (want('chain')) {
        result.chain_stages_per_sec = Math.round(await chain(target.clients));
        progress(`chain: ${result.chain_stages_per_sec} stages/s`);
      }
      if (want('fanout')) {
        warmup.fanout = await warmUp('fanout', () => fanout(target.clients), progress);
        result.fanout_stages_per_sec = Math.round(await fanout(target.clients));
        progress(`fanout: ${result.fanout_stages_per_sec} stages/s`);
      }
      if (want('scaling')) result.scaling = await scaling(target.clients, undefined, progress);
      if (want('run_and_wait')) {
        result.run_and_wait_ms = await runAndWaitLatency(target.clients);
        progress(`run_and_wait: ${JSON.stringify(result.run_and_wait_ms)}`);
      }
    });
  }
  options.signal?.throwIfAborted();
  if (want('validate')) {
    result.validate_1000_ms = Number((await benchValidate1000()).toFixed(2));
    progress(`validate_1000_ms: ${result.validate_1000_ms}`);
  }
  options.signal?.throwIfAborted();
  if (want('event_latency')) {
    result.event_latency_ms = await measureEventLatency({ ratePerSecond: 1_000 });
    result.event_latency_ms_10k = await measureEventLatency({ ratePerSecond: 10_000 });
    progress(`event_latency_ms: ${JSON.stringify(result.event_latency_ms)}`);
  }
  options.signal?.throwIfAborted();
  if (want('observability_overhead')) {
    // Fresh mesh processes of its own, with tracing to a real Jaeger and metrics on, then off.
    result.observability_overhead = await measureObservabilityOverhead({ progress, signal: options.signal }).catch((err: unknown) => {
      if (options.signal?.aborted) throw err;
      return { error: (err as Error).message };
    });
    progress(`observability_overhead: ${JSON.stringify(result.observability_overhead)}`);
  }
  return result;
}
