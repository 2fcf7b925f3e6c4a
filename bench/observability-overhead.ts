import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startJaeger, type JaegerInstance } from '../test/support/jaeger.js';
import { toolPath } from '../test/support/tools.js';
import { packageRoot } from '../services/common/paths.js';
import { readPrometheusSample } from './prometheus-sample.js';
import { chain, runAndWaitSamples, warmUp, withBenchTarget } from './run-bench.js';
import { median } from './sustained.js';
import { percentile } from './workloads.js';

/** What one mode of the mesh measured. */
export interface ModeFigures {
  /** Chain workload: 4-stage noop runs submitted together. */
  stages_per_sec: number;
  /** CPU time of the mesh process (its services and worker, not the load generator) per stage of the chain workload: what limits throughput on a machine of its own. */
  cpu_ms_per_stage: number;
  /** RunAndWait of a 4-stage noop chain, one run at a time, divided by its stages. */
  stage_latency_ms: { p50: number; p99: number };
}

/** A mode with observability on, against the off mode of the same rounds. */
export interface OverheadFigures extends ModeFigures {
  /** Throughput lost, in % of the off figure of the same round; the median over rounds (negative: none measurable). */
  throughput_overhead_pct: number;
  /** CPU per stage added, in % of the off figure of the same round; the median over rounds. */
  cpu_overhead_pct: number;
  /** Per-stage latency (p50) added, in ms, against the same round; the median over rounds. */
  stage_latency_added_ms: number;
}

export interface ObservabilityOverhead {
  /** Tracing off (no OTEL_* variables) and the metrics service not following events: the median of the rounds. */
  off: ModeFigures;
  /**
   * Tracing on as a mesh runs by default, exporting OTLP to a real Jaeger
   * (no OTEL_TRACES_SAMPLER: runs traced whole up to
   * STAGEMESH_TRACES_PER_SECOND, 10 a second), and metrics on.
   */
  on: OverheadFigures;
  /** The same with OTEL_TRACES_SAMPLER=parentbased_always_on: every run traced, as when debugging. */
  on_every_run: OverheadFigures;
  /** Each round's measurements, by mode, in the order measured. */
  rounds: Record<Mode, ModeFigures>[];
  /** Services Jaeger received spans from during the rounds with tracing on. */
  jaeger_services: string[];
}

export interface OverheadOptions {
  /** Runs of the chain workload per round. @default 600 */
  runs?: number;
  /** Sequential RunAndWait samples per round. @default 150 */
  samples?: number;
  /** Rounds of each mode, alternating off and on so drift of the machine hits both. @default 3 */
  rounds?: number;
  progress?: (line: string) => void;
  /** Aborting it stops the mesh process being measured, and Jaeger. */
  signal?: AbortSignal;
}

const STAGES = 4;

const MODES = ['off', 'on', 'on_every_run'] as const;
type Mode = (typeof MODES)[number];

/** The OTEL_* variables of each traced mode (besides the endpoint). */
const MODE_ENV: Record<Exclude<Mode, 'off'>, Record<string, string>> = {
  on: {},
  on_every_run: { OTEL_TRACES_SAMPLER: 'parentbased_always_on' },
};

/** The mesh process of each mode: `stagemesh start` plus the switch that keeps metrics from following events. */
function overheadEntry(mode: Mode): string[] {
  return [join(packageRoot(), 'dist', 'bench', 'overhead-mesh.js'), '--metrics', mode === 'off' ? 'off' : 'on'];
}

/** Total CPU time of the mesh process, in ms, from its own Prometheus endpoint. */
async function meshCpuMs(metricsUrl: string): Promise<number> {
  const sample = await readPrometheusSample(metricsUrl, 'process_cpu_seconds_total');
  if ('problem' in sample) throw new Error(`cannot read the CPU time of the mesh process at ${metricsUrl}: ${sample.problem}`);
  return sample.value * 1000;
}

async function measureMode(mode: Mode, env: Record<string, string>, options: Required<Omit<OverheadOptions, 'progress' | 'signal'>>, signal: AbortSignal | undefined): Promise<ModeFigures> {
  return withBenchTarget(undefined, { child: { entry: overheadEntry(mode), env }, signal }, async ({ clients, child }) => {
    await warmUp('chain', () => chain(clients));
    const cpuBefore = await meshCpuMs(child!.metricsUrl);
    const stagesPerSec = await chain(clients, options.runs, STAGES);
    const cpuMsPerStage = ((await meshCpuMs(child!.metricsUrl)) - cpuBefore) / (options.runs * STAGES);
    const perStageMs = (await runAndWaitSamples(clients, STAGES, options.samples)).map((ms) => ms / STAGES);
    return { stages_per_sec: Math.round(stagesPerSec), cpu_ms_per_stage: round3(cpuMsPerStage), stage_latency_ms: { p50: round2(percentile(perStageMs, 50)), p99: round2(percentile(perStageMs, 99)) } };
  });
}

const round2 = (n: number) => Number(n.toFixed(2));
const round3 = (n: number) => Number(n.toFixed(3));

function medianFigures(list: ModeFigures[]): ModeFigures {
  return {
    stages_per_sec: Math.round(median(list.map((f) => f.stages_per_sec))),
    cpu_ms_per_stage: round3(median(list.map((f) => f.cpu_ms_per_stage))),
    stage_latency_ms: { p50: round2(median(list.map((f) => f.stage_latency_ms.p50))), p99: round2(median(list.map((f) => f.stage_latency_ms.p99))) },
  };
}

/**
 * Measures what observability costs: the chain workload's throughput, CPU
 * per stage and the per-stage latency of one run at a time, with tracing
 * (OTLP to a real Jaeger from `.tools/bin`, started here and stopped
 * afterwards; sampled as by default, then every run) and the metrics service on, against
 * both off, each mode on a fresh mesh process (bench/overhead-mesh.ts, the
 * OTEL_* variables of the mode in its environment and none of this
 * process's), in rounds that take the modes in turn; each mode reports the
 * median of its rounds and the overheads are the medians of the
 * round-by-round differences.
 * @throws Error when Jaeger is not installed (`make tools`).
 */
export async function measureObservabilityOverhead(options: OverheadOptions = {}): Promise<ObservabilityOverhead> {
  const settings = { runs: options.runs ?? 600, samples: options.samples ?? 150, rounds: options.rounds ?? 3 };
  const progress = options.progress ?? (() => undefined);
  let jaeger: JaegerInstance | undefined;
  const rounds: Record<Mode, ModeFigures>[] = [];
  try {
    if (!existsSync(toolPath('jaeger'))) throw new Error(`observability_overhead needs Jaeger at ${toolPath('jaeger')}: run \`make tools\``);
    jaeger = await startJaeger();
    for (let round = 0; round < settings.rounds; round++) {
      const measured = {} as Record<Mode, ModeFigures>;
      for (const mode of MODES) {
        const env = mode === 'off' ? {} : { OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttp, ...MODE_ENV[mode] };
        measured[mode] = await measureMode(mode, env, settings, options.signal);
        progress(`observability_overhead: round ${round + 1} ${mode}: ${JSON.stringify(measured[mode])}`);
      }
      rounds.push(measured);
    }
    const services = ((await (await fetch(`${jaeger.queryUrl}/api/services`)).json()) as { data: string[] | null }).data ?? [];
    const against = (mode: Exclude<Mode, 'off'>): OverheadFigures => ({
      ...medianFigures(rounds.map((r) => r[mode])),
      throughput_overhead_pct: round2(median(rounds.map((r) => (1 - r[mode].stages_per_sec / r.off.stages_per_sec) * 100))),
      cpu_overhead_pct: round2(median(rounds.map((r) => (r[mode].cpu_ms_per_stage / r.off.cpu_ms_per_stage - 1) * 100))),
      stage_latency_added_ms: round2(median(rounds.map((r) => r[mode].stage_latency_ms.p50 - r.off.stage_latency_ms.p50))),
    });
    return {
      off: medianFigures(rounds.map((r) => r.off)),
      on: against('on'),
      on_every_run: against('on_every_run'),
      rounds,
      jaeger_services: services.filter((s) => s.startsWith('stagemesh-')).sort(),
    };
  } finally {
    await jaeger?.stop();
  }
}
