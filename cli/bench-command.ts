import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { MeshChildError } from '../bench/mesh-child.js';
import { BENCH_PROFILES, runBench, type BenchProfile } from '../bench/run-bench.js';
import { consulBaseUrl } from '../services/common/discovery.js';
import { MAX_RATE_STAGES_PER_SEC, MIN_DURATION_MS, runSustained, DEFAULT_INTERVAL_MS, type SustainedOptions, type SustainedReporter } from '../bench/sustained.js';
import { parseDurationMs } from '../services/common/duration.js';
import { CliError, ExitCode } from './cli-error.js';
import { describeCallError } from './output.js';

const WORKLOADS = ['chain', 'fanout', 'scaling', 'run_and_wait', 'validate', 'event_latency', 'observability_overhead'];
/** Most measuring intervals one sustained run may have. */
const MAX_INTERVALS = 1_000;

/** The options of `stagemesh bench`, as commander parses them. */
export interface BenchFlags {
  only?: string;
  duration?: string;
  rate?: string;
  interval?: string;
  metricsUrl?: string;
  profile?: string;
}

const usage = (message: string) => new CliError(message, ExitCode.USAGE);

/**
 * The sustained-load options given by the flags, undefined when `--duration`
 * is absent (the standard workloads run then).
 * @throws CliError (exit code 2) on a bad or misplaced flag.
 */
export function sustainedOptionsOf(flags: BenchFlags, address: string | undefined): Omit<SustainedOptions, 'reporter'> | undefined {
  if (flags.duration === undefined) {
    const misplaced = [flags.rate !== undefined && '--rate', flags.interval !== undefined && '--interval', flags.metricsUrl !== undefined && '--metrics-url'].filter(Boolean);
    if (misplaced.length) throw usage(`${misplaced.join(', ')} only apply to the sustained-load mode: add --duration (e.g. --duration 60s)`);
    return undefined;
  }
  if (flags.only !== undefined) throw usage('--only selects standard workloads; it cannot be combined with --duration');
  const durationMs = parseDurationMs(flags.duration);
  if (durationMs === undefined || durationMs < MIN_DURATION_MS) throw usage(`--duration expects a duration of at least 1s such as 60s or 5m, got "${flags.duration}"`);
  const intervalMs = flags.interval === undefined ? Math.min(DEFAULT_INTERVAL_MS, durationMs) : parseDurationMs(flags.interval);
  if (intervalMs === undefined || intervalMs < 1_000 || intervalMs > durationMs) throw usage(`--interval expects a duration from 1s up to --duration (${flags.duration}), got "${flags.interval}"`);
  if (Math.ceil(durationMs / intervalMs) > MAX_INTERVALS) throw usage(`--duration ${flags.duration} with --interval ${flags.interval ?? '5s'} makes more than ${MAX_INTERVALS} intervals; lengthen --interval`);
  let rate: number | 'auto' = 'auto';
  if (flags.rate !== undefined && flags.rate !== 'auto') {
    rate = /^\d+(?:\.\d+)?$/.test(flags.rate) ? Number(flags.rate) : Number.NaN;
    if (!(rate > 0 && rate <= MAX_RATE_STAGES_PER_SEC)) throw usage(`--rate expects stages per second (a number above 0, at most ${MAX_RATE_STAGES_PER_SEC}) or "auto", got "${flags.rate}"`);
  }
  if (flags.metricsUrl !== undefined) {
    if (address === undefined) throw usage('--metrics-url applies with --address (without it the benchmark reads the memory of the mesh process it starts)');
    if (!URL.canParse(flags.metricsUrl) || !/^https?:$/.test(new URL(flags.metricsUrl).protocol)) throw usage(`--metrics-url expects an http(s) URL, got "${flags.metricsUrl}"`);
  }
  return { address, durationMs, intervalMs, rate, metricsUrl: flags.metricsUrl };
}

/** Progress of the sustained mode on a terminal: notes as lines, the load as a bar with the last interval's figures. */
function terminalReporter(stream: NodeJS.WriteStream): SustainedReporter {
  let bar: SingleBar | undefined;
  return {
    note: (line) => stream.write(`bench: ${line}\n`),
    tick: (elapsedS, totalS, latest) => {
      if (!bar) {
        bar = new SingleBar({ stream, format: 'bench: load |{bar}| {value}/{total} s  {figures}', hideCursor: true }, Presets.shades_classic);
        bar.start(Math.round(totalS), 0, { figures: '' });
      }
      const figures = latest ? `at ${latest.t_s} s: ${latest.stages_per_sec} stages/s, stage p99 ${latest.stage_latency_ms.p99 ?? '-'} ms` : 'first interval';
      bar.update(Math.floor(elapsedS), { figures });
    },
    loadDone: () => {
      bar?.update(bar.getTotal());
      bar?.stop();
    },
  };
}

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('measure throughput and latency; prints one JSON object (starts an embedded mesh as a separate process unless --address is given)')
    .option('--json', 'print only the JSON result (the default output is JSON too)')
    .option('--only <list>', `comma-separated workloads: ${WORKLOADS.join(', ')}`)
    .option('--profile <profile>', 'embedded (a fresh `stagemesh start`), or distributed: the cluster `make cluster` started, found through Consul at CONSUL_HTTP_ADDR (default 127.0.0.1:8500) unless --address says otherwise', 'embedded')
    .option('--duration <duration>', 'sustained-load mode: offer load for this long (e.g. 60s) and report throughput, latency and memory over time')
    .option('--rate <stages/s|auto>', 'sustained-load mode: stages per second to offer, as runs of a 4-stage noop chain (rate/4 runs per second); auto (the default) is 80 % of a peak measured first')
    .option('--interval <duration>', 'sustained-load mode: length of one measuring interval (default 5s)')
    .option('--metrics-url <url>', 'sustained-load mode with --address: Prometheus endpoint of the mesh to read its resident memory from')
    .action(async (flags: BenchFlags) => {
      if (!(BENCH_PROFILES as readonly string[]).includes(flags.profile ?? 'embedded')) throw usage(`--profile expects ${BENCH_PROFILES.join(' or ')}, got "${flags.profile}"`);
      const profile = (flags.profile ?? 'embedded') as BenchProfile;
      const address = (program.opts().address as string | undefined) ?? (profile === 'distributed' ? `consul://${new URL(consulBaseUrl()).host}` : undefined);
      const sustained = sustainedOptionsOf(flags, address);
      const tty = Boolean(process.stderr.isTTY);
      const only = flags.only?.split(',').map((s) => s.trim());
      const unknown = only?.filter((w) => !WORKLOADS.includes(w)) ?? [];
      if (unknown.length) throw usage(`--only: unknown workload ${unknown.join(', ')} (known: ${WORKLOADS.join(', ')})`);
      // Ctrl-C (or SIGTERM) stops the mesh process the benchmark started and ends the command; a second one exits at once.
      const controller = new AbortController();
      let signals = 0;
      const interrupt = (signal: NodeJS.Signals) => {
        if (++signals > 1) process.exit(130);
        controller.abort(new CliError(`interrupted by ${signal}${address ? '' : '; the mesh process was stopped'}`, ExitCode.FAILED));
      };
      process.on('SIGINT', interrupt);
      process.on('SIGTERM', interrupt);
      let result: unknown;
      try {
        const signal = controller.signal;
        if (sustained) result = await runSustained({ ...sustained, signal, reporter: tty ? terminalReporter(process.stderr) : undefined });
        else result = await runBench({ address, only, profile, signal, progress: tty ? (line: string) => process.stderr.write(`bench: ${line}\n`) : undefined });
      } catch (err) {
        if (controller.signal.aborted) throw controller.signal.reason;
        // The mesh process crashed or could not start: its exit and last output say why, without a stack.
        if (err instanceof MeshChildError) throw new CliError(err.message, ExitCode.FAILED, { cause: err });
        // A mesh that cannot be reached, or that refuses a call, is said in one line.
        throw address ? describeCallError(err, address) : err;
      } finally {
        process.off('SIGINT', interrupt);
        process.off('SIGTERM', interrupt);
      }
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    });
}
