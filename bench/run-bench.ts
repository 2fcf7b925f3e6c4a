import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveMeshConfig } from '../services/common/config.js';
import { callUnary, createMeshClients, type MeshClients } from '../services/common/grpc-client.js';
import { createLogger } from '../services/common/logger.js';
import { EmbeddedMesh, type EmbeddedMeshOptions } from '../services/mesh/embedded-mesh.js';
import { measureEventLatency } from './event-latency.js';
import { measureObservabilityOverhead } from './observability-overhead.js';
import { benchValidate1000 } from './validate.js';
import { awaitFinishedRuns, chainDocument, fanoutDocument, percentile, runAndWait, sleepDocument, submitAll, submitOf } from './workloads.js';

export interface BenchOptions {
  /** Drive a running mesh instead of starting one. */
  address?: string;
  /** Called with a line of progress (for a terminal). */
  progress?: (line: string) => void;
  /** Workloads to run; all by default. */
  only?: string[];
}

/** The machine a result was measured on. */
export function machine() {
  return { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, platform: `${process.platform}-${process.arch}` };
}

/** A mesh to measure: the one at `address`, or a fresh embedded one on free ports in a temporary folder. */
export async function benchTarget(address: string | undefined, meshOptions: EmbeddedMeshOptions = {}): Promise<{ clients: MeshClients; mesh?: EmbeddedMesh; close(): Promise<void> }> {
  if (address) {
    const clients = createMeshClients(address);
    return { clients, close: async () => clients.close() };
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'stagemesh-bench-'));
  const config = { ...resolveMeshConfig({}, {}), grpcPort: 0, httpPort: 0, dataDir, workerCapacity: 1024, logLevel: 'warn' as const };
  const mesh = await EmbeddedMesh.start(config, createLogger({ level: 'warn' }), meshOptions);
  const clients = createMeshClients(`127.0.0.1:${mesh.grpcPort}`);
  return {
    clients,
    mesh,
    close: async () => {
      clients.close();
      await mesh.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const unique = (name: string) => `${name}-${Date.now().toString(36)}`;

/**
 * 1,000 runs of a registered 4-stage noop chain submitted concurrently (by
 * name, as a deployed pipeline is): stages per second from first submit to last finish.
 */
export async function chain(clients: MeshClients, runs = 1000, length = 4): Promise<number> {
  const name = unique('bench-chain');
  await callUnary(clients.scheduler.registerPipeline.bind(clients.scheduler), { document: chainDocument(name, length) });
  const waiter = awaitFinishedRuns(clients, name, runs, 300_000);
  await waiter.ready;
  const started = performance.now();
  await submitAll(clients, Array.from({ length: runs }, () => submitOf('', { document: undefined, pipelineRef: name })));
  await waiter.done;
  return (runs * length) / ((performance.now() - started) / 1000);
}

/** One run, 1 → 1,000 → 1 noop stages. */
async function fanout(clients: MeshClients, width = 1000): Promise<number> {
  const { ms, succeeded } = await runAndWait(clients, fanoutDocument(unique('bench-fanout'), width));
  if (!succeeded) throw new Error('the fan-out run did not succeed');
  return (width + 2) / (ms / 1000);
}

/** Sleep-50ms stages at a concurrency: efficiency = ideal time ÷ measured time (5 waves). */
async function scaling(clients: MeshClients, levels = [1, 5, 10, 20, 100, 1000], progress?: (line: string) => void) {
  const results: { concurrency: number; efficiency: number }[] = [];
  for (const concurrency of levels) {
    const waves = 5;
    const { ms, succeeded } = await runAndWait(clients, sleepDocument(unique(`bench-scale-${concurrency}`), concurrency * waves, concurrency, '50ms'));
    if (!succeeded) throw new Error(`the scaling run at concurrency ${concurrency} did not succeed`);
    const efficiency = Math.min(1, (waves * 50) / ms);
    results.push({ concurrency, efficiency: Number(efficiency.toFixed(3)) });
    progress?.(`scaling: concurrency ${concurrency} efficiency ${efficiency.toFixed(3)}`);
  }
  return results;
}

/** RunAndWait latency of a 3-stage noop chain, one run at a time. */
async function runAndWaitLatency(clients: MeshClients, samples = 200) {
  const document = chainDocument(unique('bench-rw'), 3);
  for (let i = 0; i < 10; i++) await runAndWait(clients, document); // warm-up
  const ms: number[] = [];
  for (let i = 0; i < samples; i++) ms.push((await runAndWait(clients, document)).ms);
  return { p50: Number(percentile(ms, 50).toFixed(2)), p99: Number(percentile(ms, 99).toFixed(2)) };
}

/** Runs the benchmark and returns one JSON-ready object. */
export async function runBench(options: BenchOptions = {}): Promise<Record<string, unknown>> {
  const progress = options.progress ?? (() => undefined);
  const want = (name: string) => !options.only || options.only.includes(name);
  const target = await benchTarget(options.address);
  const result: Record<string, unknown> = { profile: options.address ? `remote ${options.address}` : 'embedded', machine: machine() };
  try {
    progress('warming up');
    await chain(target.clients, 100);
    if (want('chain')) {
      result.chain_stages_per_sec = Math.round(await chain(target.clients));
      progress(`chain: ${result.chain_stages_per_sec} stages/s`);
    }
    if (want('fanout')) {
      result.fanout_stages_per_sec = Math.round(await fanout(target.clients));
      progress(`fanout: ${result.fanout_stages_per_sec} stages/s`);
    }
    if (want('scaling')) result.scaling = await scaling(target.clients, undefined, progress);
    if (want('run_and_wait')) {
      result.run_and_wait_ms = await runAndWaitLatency(target.clients);
      progress(`run_and_wait: ${JSON.stringify(result.run_and_wait_ms)}`);
    }
    if (want('validate')) {
      result.validate_1000_ms = Number((await benchValidate1000()).toFixed(2));
      progress(`validate_1000_ms: ${result.validate_1000_ms}`);
    }
    if (want('event_latency')) {
      result.event_latency_ms = await measureEventLatency({ ratePerSecond: 1_000 });
      result.event_latency_ms_10k = await measureEventLatency({ ratePerSecond: 10_000 });
      progress(`event_latency_ms: ${JSON.stringify(result.event_latency_ms)}`);
    }
    if (want('observability_overhead')) {
      // Fresh embedded meshes of its own, with tracing to a real Jaeger and metrics on, then off.
      result.observability_overhead = await measureObservabilityOverhead({ progress }).catch((err: unknown) => ({ error: (err as Error).message }));
      progress(`observability_overhead: ${JSON.stringify(result.observability_overhead)}`);
    }
  } finally {
    await target.close();
  }
  return result;
}
