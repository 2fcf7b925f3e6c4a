import { loadavg } from 'node:os';
import { build, type Histogram } from 'hdr-histogram-js';
import { callUnary, type MeshClients } from '../services/common/grpc-client.js';
import type { Event } from '../services/common/proto.js';
import { subscribeEventsResuming, subscribeRequest } from '../services/event-bus/event-stream.js';
import { readPrometheusSample } from './prometheus-sample.js';
import { chain, machine, MeshProcess, warmUp, withBenchTarget, type BenchTarget } from './run-bench.js';
import { chainDocument, registered } from './workloads.js';

/** Stages of the chain the sustained mode submits (the same registered noop chain as `chain_stages_per_sec`). */
export const CHAIN_LENGTH = 4;
/** Share of the measured peak offered by `--rate auto`. */
export const AUTO_RATE_FRACTION = 0.8;
/** Highest `--rate` accepted, in stages per second. */
export const MAX_RATE_STAGES_PER_SEC = 100_000;
/** Shortest `--duration` accepted. */
export const MIN_DURATION_MS = 1_000;
/** @default 5 s */
export const DEFAULT_INTERVAL_MS = 5_000;

/** How often the load schedule is checked: runs due since the last tick are submitted together. */
const TICK_MS = 25;
/** SubmitRun calls waiting for an answer at most; past this the schedule falls behind (reported as unsubmitted runs). */
const MAX_SUBMITS_IN_FLIGHT = 2_000;
/** Runs of the peak measurement behind `--rate auto` (the `chain_stages_per_sec` workload). */
const PEAK_RUNS = 1_000;
/**
 * Quiet before each of the two memory samples. V8 gives back the heap it grew
 * under load only when its memory reducer runs a GC, and that waits until
 * V8 sees a low allocation rate, which it judges from samples taken every
 * 8 s: after a load, 20 s of quiet often passed without that GC (the heap
 * still as large as under load). It came 25–35 s after the load ended, and
 * in three runs with extra instrumentation in the mesh not within 41 s, so
 * each sample waits a minute. Both samples wait as long, so they compare
 * what the mesh keeps, not how far its heap had grown just before.
 */
const SETTLE_MS = 60_000;
/** Stage outcome events (one per stage that finishes). */
const OUTCOMES = ['stage.succeeded', 'stage.failed', 'stage.cancelled'];
/**
 * One run in this many is a probe whose stage events the benchmark follows
 * for stage latency: following every stage's events would put a second,
 * larger load on the mesh (two events per stage streamed to one client) than
 * the one being measured.
 */
export const PROBE_EVERY = 4;

/** Options of runSustained. */
export interface SustainedOptions {
  /** Drive a running mesh instead of starting an embedded one. */
  address?: string;
  /** How long load is offered, in milliseconds (at least MIN_DURATION_MS). */
  durationMs: number;
  /** Stages per second offered; `auto` = AUTO_RATE_FRACTION of a peak measured first. @default 'auto' */
  rate?: number | 'auto';
  /** Length of one measuring interval. @default DEFAULT_INTERVAL_MS */
  intervalMs?: number;
  /** With `address`: a Prometheus text endpoint of the mesh whose `process_resident_memory_bytes` gives its memory. */
  metricsUrl?: string;
  /** Told what happens, for a terminal. */
  reporter?: SustainedReporter;
  /** Aborting it (Ctrl-C) stops the load and the mesh the benchmark started; runSustained then rejects. */
  signal?: AbortSignal;
}

/** What a terminal shows while the sustained mode runs. */
export interface SustainedReporter {
  /** A phase starts (peak measurement, settling, draining). */
  note(line: string): void;
  /** Called about once a second while load is offered, with the last complete interval, if any. */
  tick(elapsedS: number, totalS: number, latest: IntervalFigures | undefined): void;
  /** Load is no longer offered. */
  loadDone(): void;
}

/** Percentiles of one latency, in milliseconds (null when nothing was measured). */
export interface Percentiles {
  p50: number | null;
  p99: number | null;
}

/** The figures of one measuring interval. */
export interface IntervalFigures {
  /** Seconds since load started, at the interval's end. */
  t_s: number;
  /** Stages of the runs whose `run.finished` arrived in the interval (CHAIN_LENGTH each) ÷ its length. */
  stages_per_sec: number;
  /** Of the probe runs' stages: from a stage's `stage.ready` event to its outcome event, by their `time` (the scheduler's steps that queued and ended it); by the outcome's arrival. */
  stage_latency_ms: Percentiles;
  /** From the SubmitRun call to the arrival of `run.finished`, on the benchmark's clock; by the arrival. */
  run_latency_ms: Percentiles;
  /** Resident memory of the mesh at the interval's end (null when unavailable). */
  rss_mb: number | null;
}

/** `sustained` in the JSON of `stagemesh bench --duration`. */
export interface SustainedResult {
  rate_stages_per_sec: number;
  rate_source: 'given' | 'auto';
  /** Stages per second of each warm-up round of the chain workload (warmUp). */
  warmup_chain_stages_per_sec: number[];
  /** `chain_stages_per_sec` measured just before, when the rate is `auto`. */
  peak_chain_stages_per_sec?: number;
  runs_per_sec: number;
  duration_s: number;
  interval_s: number;
  intervals: IntervalFigures[];
  /** Median of stages_per_sec over the intervals after the first: what the mesh sustained. */
  median_stages_per_sec: number | null;
  /** Max relative deviation of stages_per_sec from its median, over the intervals after the first. */
  throughput_flatness: number | null;
  /** The same for stage_latency_ms.p99. */
  p99_flatness: number | null;
  flatness_definition: string;
  /** Over the whole load window. */
  stage_latency_ms: Percentiles;
  run_latency_ms: Percentiles;
  rss_mb: { start: number | null; end: number | null; growth: number | null; source: string };
  scheduled_runs: number;
  submitted_runs: number;
  submit_errors: number;
  first_submit_error?: string;
  finished_runs: number;
  failed_runs: number;
  unfinished_runs: number;
  /** From the end of the load window to the last run's end (or the drain's time limit). */
  drain_s: number;
  /**
   * Times the benchmark's event subscription was ended by the bus and resumed
   * from its last event, e.g. after falling more events behind than the bus
   * holds for a subscriber. The run ends of that time arrive late and count
   * in a later interval than they happened in; those the bus no longer held
   * when the benchmark resumed are lost to it and show in `unfinished_runs`.
   */
  event_resubscriptions: number;
  load_average_1m: { start: number; end: number };
}

export const FLATNESS_DEFINITION =
  'max over the intervals after the first of |x - median| / median, the median taken over those same intervals; the first interval is warm-up and left out';

/**
 * Runs due `elapsedMs` into a fixed schedule of `runsPerSec`, at most `total`:
 * run k (from 0) is due at k ÷ runsPerSec seconds, so the first is due at once
 * and all `total` are due before `total` ÷ runsPerSec seconds have passed.
 */
export function runsDue(runsPerSec: number, elapsedMs: number, total: number): number {
  if (elapsedMs < 0) return 0;
  return Math.min(total, Math.floor((elapsedMs * runsPerSec) / 1000) + 1);
}

/** The median of the values (mean of the two middle ones for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * How far a series strays from its typical value: the largest |x − median| ÷ median
 * over the values after the first `warmup` ones (0.1 = every value within 10 % of
 * the median). A null value (an interval where nothing finished) is left out.
 * Null when fewer than two values remain or the median is not positive.
 */
export function flatness(values: readonly (number | null)[], warmup = 1): number | null {
  const kept = values.slice(warmup).filter((v): v is number => v !== null && Number.isFinite(v));
  if (kept.length < 2) return null;
  const m = median(kept);
  if (!(m > 0)) return null;
  return round(Math.max(...kept.map((v) => Math.abs(v - m) / m)), 3);
}

const round = (value: number, digits: number) => Number(value.toFixed(digits));
const toMb = (bytes: number) => round(bytes / 2 ** 20, 1);

function latencyHistogram(): Histogram {
  // Microseconds, up to an hour, 3 significant digits.
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
}

function percentilesOf(histogram: Histogram): Percentiles {
  if (histogram.totalCount === 0) return { p50: null, p99: null };
  return { p50: round(histogram.getValueAtPercentile(50) / 1000, 1), p99: round(histogram.getValueAtPercentile(99) / 1000, 1) };
}

/**
 * Stage outcomes and latencies sorted into fixed intervals of the load window
 * by when they were observed (ms since load started); observations after the
 * window count only toward the totals of the run.
 */
export class IntervalRecorder {
  readonly #stages: number[];
  readonly #stageLatency: Histogram[];
  readonly #runLatency: Histogram[];
  readonly #rssMb: (number | null)[];
  readonly #stageTotal = latencyHistogram();
  readonly #runTotal = latencyHistogram();

  constructor(
    readonly intervalMs: number,
    readonly windowMs: number,
  ) {
    const count = Math.ceil(windowMs / intervalMs);
    this.#stages = new Array<number>(count).fill(0);
    this.#stageLatency = Array.from({ length: count }, latencyHistogram);
    this.#runLatency = Array.from({ length: count }, latencyHistogram);
    this.#rssMb = new Array<number | null>(count).fill(null);
  }

  /** Number of intervals in the window (the last may be shorter). */
  get count(): number {
    return this.#stages.length;
  }

  #index(atMs: number): number | undefined {
    if (atMs < 0 || atMs >= this.windowMs) return undefined;
    return Math.floor(atMs / this.intervalMs);
  }

  /** `count` stages finished, observed at `atMs`. */
  stagesFinished(atMs: number, count: number): void {
    const i = this.#index(atMs);
    if (i !== undefined) this.#stages[i]! += count;
  }

  /** A sampled stage's ready → outcome latency, observed at `atMs`. */
  stageLatency(atMs: number, latencyMs: number): void {
    const i = this.#index(atMs);
    const us = Math.max(0, Math.round(latencyMs * 1000));
    if (i !== undefined) this.#stageLatency[i]!.recordValue(us);
    this.#stageTotal.recordValue(us);
  }

  /** A run finished, observed at `atMs`, `latencyMs` after it was submitted. */
  runFinished(atMs: number, latencyMs: number): void {
    const i = this.#index(atMs);
    const us = Math.max(0, Math.round(latencyMs * 1000));
    if (i !== undefined) this.#runLatency[i]!.recordValue(us);
    this.#runTotal.recordValue(us);
  }

  /** Resident memory sampled for interval `index`. */
  setRss(index: number, mb: number | null): void {
    if (index >= 0 && index < this.count) this.#rssMb[index] = mb;
  }

  /** The figures of interval `index`. */
  interval(index: number): IntervalFigures {
    const start = index * this.intervalMs;
    const end = Math.min(this.windowMs, start + this.intervalMs);
    return {
      t_s: round(end / 1000, 3),
      stages_per_sec: round(this.#stages[index]! / ((end - start) / 1000), 1),
      stage_latency_ms: percentilesOf(this.#stageLatency[index]!),
      run_latency_ms: percentilesOf(this.#runLatency[index]!),
      rss_mb: this.#rssMb[index]!,
    };
  }

  /** Every interval's figures, in order. */
  intervals(): IntervalFigures[] {
    return Array.from({ length: this.count }, (_, i) => this.interval(i));
  }

  /** Percentiles over the whole run. */
  totals(): { stage_latency_ms: Percentiles; run_latency_ms: Percentiles } {
    return { stage_latency_ms: percentilesOf(this.#stageTotal), run_latency_ms: percentilesOf(this.#runTotal) };
  }
}

/** Reads the mesh's resident memory in MB: from the mesh process the benchmark started, else from `metricsUrl` if given. */
function rssReader(target: BenchTarget, metricsUrl: string | undefined): { source: string; read(): Promise<number | null> } {
  const url = target.child?.metricsUrl ?? metricsUrl;
  if (!url) return { source: 'unavailable: the mesh runs in another process (pass --metrics-url to read it from its Prometheus endpoint)', read: async () => null };
  const whose = target.child ? ` (the mesh process the benchmark started, pid ${target.child.pid}; not the benchmark's own)` : '';
  let problem: string | undefined;
  return {
    get source() {
      return `process_resident_memory_bytes at ${url}${whose}${problem ? ` (last read failed: ${problem})` : ''}`;
    },
    read: async () => {
      const sample = await readPrometheusSample(url, 'process_resident_memory_bytes');
      problem = 'problem' in sample ? sample.problem : undefined;
      return 'value' in sample ? toMb(sample.value) : null;
    },
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Matches each run's end to its SubmitRun call, in either order (a short run
 * can end before its SubmitRun answer arrives), and records its latency.
 */
class RunTracker {
  readonly #submittedAt = new Map<string, number>();
  readonly #endedEarly = new Map<string, { at: number; state: string }>();
  finished = 0;
  failed = 0;

  constructor(
    private readonly recorder: IntervalRecorder,
    private readonly loadStartedAt: () => number,
  ) {}

  /** The SubmitRun call made at `at` (performance.now()) created run `runId`. */
  submitted(runId: string, at: number): void {
    const ended = this.#endedEarly.get(runId);
    if (!ended) return void this.#submittedAt.set(runId, at);
    this.#endedEarly.delete(runId);
    this.#record(at, ended.at, ended.state);
  }

  /** `run.finished` of `runId` arrived at `at`. */
  ended(runId: string, at: number, state: string): void {
    const sentAt = this.#submittedAt.get(runId);
    if (sentAt === undefined) return void this.#endedEarly.set(runId, { at, state });
    this.#submittedAt.delete(runId);
    this.#record(sentAt, at, state);
  }

  #record(sentAt: number, at: number, state: string): void {
    this.finished++;
    if (state !== 'SUCCEEDED') this.failed++;
    this.recorder.runFinished(at - this.loadStartedAt(), at - sentAt);
  }
}

/**
 * Follows the bus until `signal` aborts: `run.finished` of the load and probe
 * pipelines (each run's end goes to `runs`, its CHAIN_LENGTH stages to the
 * throughput of the interval it ended in) and the stage events of the probe
 * pipeline alone (each stage's ready → outcome latency). A subscription
 * the bus ends because the benchmark fell too far behind resumes from its
 * last event (`onResubscribe` counts it); rejects on any other failure.
 */
async function followEvents(
  clients: MeshClients,
  pipelines: { load: string; probe: string },
  loadStartedAt: () => number,
  recorder: IntervalRecorder,
  runs: RunTracker,
  signal: AbortSignal,
  onResubscribe: () => void,
): Promise<void> {
  const readyAt = new Map<string, number>();
  const onEvent = (event: Event) => {
    const at = performance.now();
    const runId = event.attributes.run_id ?? '';
    const stageKey = `${runId}/${event.attributes.stage_id ?? ''}`;
    const stamped = event.time?.getTime();
    if (event.type === 'run.finished') {
      runs.ended(runId, at, String((event.data as { state?: unknown } | undefined)?.state ?? ''));
      recorder.stagesFinished(at - loadStartedAt(), CHAIN_LENGTH);
    } else if (event.type === 'stage.ready') {
      if (stamped !== undefined) readyAt.set(stageKey, stamped);
    } else {
      const ready = readyAt.get(stageKey);
      readyAt.delete(stageKey);
      if (ready !== undefined && stamped !== undefined) recorder.stageLatency(at - loadStartedAt(), stamped - ready);
    }
  };
  const follow = async (subjects: string[], pipeline: string) => {
    const request = subscribeRequest({ subjects, filter: { pipeline }, newOnly: true });
    for await (const { event } of subscribeEventsResuming(clients.eventBus, request, signal, onResubscribe)) if (event) onEvent(event);
  };
  await Promise.all([follow(['run.finished'], pipelines.load), follow(['stage.ready', ...OUTCOMES, 'run.finished'], pipelines.probe)]);
}

/**
 * The sustained-load mode of `stagemesh bench --duration D --rate R`: offers
 * R stages per second as runs of a registered 4-stage noop chain, R/4 runs per
 * second on a fixed schedule (open loop: a run is submitted when it is due,
 * whether or not earlier runs have finished), for D; then waits, bounded, for
 * the submitted runs to end. Reports per interval the stages finished per
 * second and the stage and run latency percentiles (hdr-histogram), and the
 * mesh's resident memory at the start and the end. Asserts nothing.
 */
export async function runSustained(options: SustainedOptions): Promise<{ profile: string; mesh_process: MeshProcess; machine: ReturnType<typeof machine>; sustained: SustainedResult }> {
  if (!options.address) options.reporter?.note('starting the mesh process');
  return withBenchTarget(options.address, { signal: options.signal }, (target) => sustain(target, options));
}

async function sustain(target: BenchTarget, options: SustainedOptions): Promise<Awaited<ReturnType<typeof runSustained>>> {
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  const durationMs = options.durationMs;
  const reporter = options.reporter;
  const signal = options.signal;
  const { clients } = target;
  const rss = rssReader(target, options.metricsUrl);
  const controller = new AbortController();
  try {
    const warmup = await warmUp('chain', () => chain(clients, PEAK_RUNS, CHAIN_LENGTH), (line) => reporter?.note(line));
    let rate: number;
    let peak: number | undefined;
    if (options.rate === undefined || options.rate === 'auto') {
      reporter?.note(`measuring the peak (${PEAK_RUNS} runs of a ${CHAIN_LENGTH}-stage noop chain)`);
      peak = Math.round(await chain(clients, PEAK_RUNS, CHAIN_LENGTH));
      rate = round(peak * AUTO_RATE_FRACTION, 1);
      reporter?.note(`peak ${peak} stages/s; offering ${rate} stages/s`);
    } else {
      rate = options.rate;
    }
    const runsPerSec = rate / CHAIN_LENGTH;
    const scheduledRuns = Math.max(1, Math.round((runsPerSec * durationMs) / 1000));

    // Every PROBE_EVERY-th run is of an identical probe pipeline whose stage events are followed.
    const name = `bench-sustained-${Date.now().toString(36)}`;
    const [load, probe] = await Promise.all([registered(clients, chainDocument(name, CHAIN_LENGTH)), registered(clients, chainDocument(`${name}-probe`, CHAIN_LENGTH))]);
    const recorder = new IntervalRecorder(intervalMs, durationMs);
    let loadStartedAt = Number.POSITIVE_INFINITY;
    const runs = new RunTracker(recorder, () => loadStartedAt);
    // Settles to the error that ended the subscription, or undefined once aborted.
    let resubscriptions = 0;
    const followFailure = followEvents(clients, { load: load.pipelineRef!, probe: probe.pipelineRef! }, () => loadStartedAt, recorder, runs, controller.signal, () => resubscriptions++).then(
      () => undefined,
      (err: unknown) => err ?? new Error('the event subscription failed'),
    );
    let followError: unknown;
    void followFailure.then((err) => (followError = err));

    // The settle also gives the subscription time to register before any load.
    reporter?.note('settling before the first memory sample');
    await sleep(SETTLE_MS);
    if (followError) throw new Error(`subscribing to the run events failed: ${(followError as Error).message}`, { cause: followError });
    const rssStart = await rss.read();
    const loadAverageStart = loadavg()[0]!;

    let sent = 0;
    let inFlight = 0;
    let submitted = 0;
    let submitErrors = 0;
    let firstSubmitError: string | undefined;
    const submitOne = () => {
      const at = performance.now();
      inFlight++;
      void callUnary(clients.scheduler.submitRun.bind(clients.scheduler), sent % PROBE_EVERY === 0 ? probe : load, { timeoutMs: 60_000 })
        .then(
          ({ run }) => {
            submitted++;
            runs.submitted(run!.runId, at);
          },
          (err: unknown) => {
            submitErrors++;
            firstSubmitError ??= (err as Error).message;
          },
        )
        .finally(() => inFlight--);
    };

    // The open-loop schedule: every tick submits the runs due by then, whether or not earlier runs have ended.
    loadStartedAt = performance.now();
    let sampledIntervals = 0;
    let nextReportS = 0;
    for (let elapsed = 0; elapsed < durationMs && !followError && !signal?.aborted; elapsed = performance.now() - loadStartedAt) {
      const due = runsDue(runsPerSec, elapsed, scheduledRuns);
      while (sent < due && inFlight < MAX_SUBMITS_IN_FLIGHT) {
        submitOne();
        sent++;
      }
      for (; sampledIntervals < recorder.count && elapsed >= (sampledIntervals + 1) * intervalMs; sampledIntervals++) {
        const index = sampledIntervals;
        // Not awaited: reading a remote endpoint must not hold the schedule up.
        void rss.read().then((mb) => recorder.setRss(index, mb));
      }
      if (elapsed >= nextReportS * 1000) {
        nextReportS++;
        const complete = Math.floor(elapsed / intervalMs);
        reporter?.tick(elapsed / 1000, durationMs / 1000, complete > 0 ? recorder.interval(complete - 1) : undefined);
      }
      await sleep(TICK_MS);
    }
    // Every scheduled run is due before the window ends; the last tick can fall just short of it.
    while (!followError && sent < scheduledRuns && inFlight < MAX_SUBMITS_IN_FLIGHT) {
      submitOne();
      sent++;
    }
    const loadEndedAt = performance.now();
    for (; sampledIntervals < recorder.count; sampledIntervals++) recorder.setRss(sampledIntervals, await rss.read());
    reporter?.loadDone();

    // Bounded wait for the submitted runs to end.
    const drainLimitMs = Math.max(30_000, durationMs / 2);
    reporter?.note(`waiting for the submitted runs to end (at most ${Math.round(drainLimitMs / 1000)} s)`);
    const drainDeadline = loadEndedAt + drainLimitMs;
    while (!followError && !signal?.aborted && (inFlight > 0 || runs.finished < submitted) && performance.now() < drainDeadline) await sleep(50);
    const drainS = round((performance.now() - loadEndedAt) / 1000, 2);
    controller.abort();
    signal?.throwIfAborted();
    const failure = await followFailure;
    if (failure) throw new Error(`following the run events failed: ${(failure as Error).message ?? String(failure)}`, { cause: failure });

    reporter?.note('settling before the last memory sample');
    await sleep(SETTLE_MS);
    const rssEnd = await rss.read();
    const intervals = recorder.intervals();
    return {
      profile: options.address ? `remote ${options.address}` : 'embedded',
      mesh_process: target.meshProcess,
      machine: machine(),
      sustained: {
        rate_stages_per_sec: rate,
        rate_source: peak === undefined ? 'given' : 'auto',
        warmup_chain_stages_per_sec: warmup,
        ...(peak === undefined ? {} : { peak_chain_stages_per_sec: peak }),
        runs_per_sec: round(runsPerSec, 2),
        duration_s: durationMs / 1000,
        interval_s: intervalMs / 1000,
        intervals,
        median_stages_per_sec: intervals.length > 1 ? round(median(intervals.slice(1).map((i) => i.stages_per_sec)), 1) : null,
        throughput_flatness: flatness(intervals.map((i) => i.stages_per_sec)),
        p99_flatness: flatness(intervals.map((i) => i.stage_latency_ms.p99)),
        flatness_definition: FLATNESS_DEFINITION,
        ...recorder.totals(),
        rss_mb: { start: rssStart, end: rssEnd, growth: rssStart !== null && rssEnd !== null ? round(rssEnd - rssStart, 1) : null, source: rss.source },
        scheduled_runs: scheduledRuns,
        submitted_runs: submitted,
        submit_errors: submitErrors,
        ...(firstSubmitError ? { first_submit_error: firstSubmitError } : {}),
        finished_runs: runs.finished,
        failed_runs: runs.failed,
        unfinished_runs: submitted - runs.finished,
        drain_s: drainS,
        event_resubscriptions: resubscriptions,
        load_average_1m: { start: round(loadAverageStart, 2), end: round(loadavg()[0]!, 2) },
      },
    };
  } finally {
    controller.abort();
  }
}
