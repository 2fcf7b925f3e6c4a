import { GroupBy, type Event, type MetricSeries } from '../common/proto.js';
import { BucketRing, comboKey, comboParts, GroupStats, StageOutcome, summarize, type Bucket, type RunSample, type StageSample } from './window-stats.js';

/** The sliding windows Query, Watch and baselines accept, by name. */
export const METRIC_WINDOWS = { '1m': 60_000, '5m': 300_000, '1h': 3_600_000 } as const;
export type MetricWindow = keyof typeof METRIC_WINDOWS;

/** True for "1m", "5m" and "1h". */
export function isMetricWindow(text: string): text is MetricWindow {
  return Object.hasOwn(METRIC_WINDOWS, text);
}

/** The longest window Query accepts. */
export const MAX_WINDOW_MS = METRIC_WINDOWS['1h'];

/** Attempts whose stage.ready time is remembered until they finish; the oldest are forgotten first. */
const MAX_PENDING_ATTEMPTS = 100_000;

const FINISHED_STAGE_EVENTS: Record<string, StageOutcome> = {
  'stage.succeeded': StageOutcome.SUCCEEDED,
  'stage.failed': StageOutcome.FAILED,
  'stage.cancelled': StageOutcome.CANCELLED,
  'stage.retrying': StageOutcome.RETRYING,
};

export interface MetricsRecorderOptions {
  /** Called with every finished attempt (the Prometheus exposition counts them). */
  onStage?: (sample: StageSample) => void;
  /** Called with every finished run. */
  onRun?: (sample: RunSample) => void;
  /** The clock. @default Date.now */
  now?: () => number;
}

/**
 * Keeps throughput, counts and HDR latency histograms of lifecycle events
 * over sliding windows of 1 minute, 5 minutes and 1 hour, per framework, node
 * and pipeline. Samples go into one-second buckets, which are added into
 * five-second and one-minute buckets once their second has passed; each
 * window reads the ring of its size, so memory is bounded by the rings.
 */
export class MetricsRecorder {
  readonly #fine = new BucketRing(1_000, 60);
  readonly #mid = new BucketRing(5_000, 60);
  readonly #coarse = new BucketRing(60_000, 60);
  /** stage.ready time of attempts in flight, by run, stage and attempt number. */
  readonly #readyAt = new Map<string, number>();
  readonly #startedAtMs: number;
  readonly #now: () => number;
  #rolledSecond = 0;

  constructor(private readonly options: MetricsRecorderOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#startedAtMs = this.#now();
  }

  /** Takes in one lifecycle event (stage.* and run.*); other events are ignored. */
  record(event: Event): void {
    const nowMs = this.#now();
    this.#rollUp(nowMs);
    const data = (event.data ?? {}) as Record<string, unknown>;
    const atMs = Math.min(nowMs, event.time?.getTime() ?? nowMs);
    const attempt = `${event.attributes.run_id ?? ''}\u0000${event.attributes.stage_id ?? ''}\u0000${String(data.attempt ?? '')}`;
    if (event.type === 'stage.ready') {
      this.#readyAt.set(attempt, atMs);
      if (this.#readyAt.size > MAX_PENDING_ATTEMPTS) this.#readyAt.delete(this.#readyAt.keys().next().value!);
      return;
    }
    const outcome = FINISHED_STAGE_EVENTS[event.type];
    if (outcome) {
      const readyAtMs = this.#readyAt.get(attempt);
      this.#readyAt.delete(attempt);
      const executionMs = Number(data.duration_ms ?? 0) || 0;
      const endToEndMs = readyAtMs === undefined ? undefined : Math.max(0, atMs - readyAtMs);
      const sample: StageSample = {
        atMs,
        outcome,
        framework: event.attributes.framework ?? '',
        node: String(data.node_id ?? event.attributes.node_id ?? ''),
        pipeline: event.attributes.pipeline ?? '',
        executionMs,
        endToEndMs,
        queueWaitMs: endToEndMs === undefined ? undefined : Math.max(0, endToEndMs - executionMs),
      };
      this.#add(atMs, nowMs, comboKey(sample), (stats) => stats.addStage(sample));
      this.options.onStage?.(sample);
      return;
    }
    if (event.type === 'run.finished') {
      const sample: RunSample = { atMs, pipeline: event.attributes.pipeline ?? '', state: String(data.state ?? '') };
      this.#add(atMs, nowMs, comboKey({ framework: '', node: '', pipeline: sample.pipeline }), (stats) => stats.runsFinished++);
      this.options.onRun?.(sample);
    }
  }

  /** Figures over the window, one series per group (one series in all when not grouped), sorted by group. */
  query(window: MetricWindow, groupBy: GroupBy): MetricSeries[] {
    const nowMs = this.#now();
    this.#rollUp(nowMs);
    const windowMs = METRIC_WINDOWS[window];
    const groups = new Map<string, GroupStats>();
    for (const bucket of this.#bucketsOf(window, nowMs)) {
      for (const [combo, stats] of bucket.combos) {
        const parts = comboParts(combo);
        const isRun = parts.framework === '' && parts.node === '';
        // Runs carry no framework or node: they count only in pipeline and ungrouped series.
        if (isRun && (groupBy === GroupBy.GROUP_BY_FRAMEWORK || groupBy === GroupBy.GROUP_BY_NODE)) continue;
        const group =
          groupBy === GroupBy.GROUP_BY_FRAMEWORK ? parts.framework : groupBy === GroupBy.GROUP_BY_NODE ? parts.node : groupBy === GroupBy.GROUP_BY_PIPELINE ? parts.pipeline : '';
        let merged = groups.get(group);
        if (!merged) groups.set(group, (merged = new GroupStats()));
        merged.merge(stats);
      }
    }
    const grouped = groupBy === GroupBy.GROUP_BY_FRAMEWORK || groupBy === GroupBy.GROUP_BY_NODE || groupBy === GroupBy.GROUP_BY_PIPELINE;
    if (groups.size === 0 && !grouped) groups.set('', new GroupStats());
    // A recorder younger than the window has not seen all of it: rates are over the time it has.
    const seconds = Math.max(1_000, Math.min(windowMs, nowMs - this.#startedAtMs)) / 1000;
    return [...groups]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([group, stats]) => ({
        group,
        stagesPerSec: stats.stagesFinished / seconds,
        runsPerSec: stats.runsFinished / seconds,
        stagesSucceeded: stats.succeeded,
        stagesFailed: stats.failed,
        retries: stats.retries,
        runsFinished: stats.runsFinished,
        queueWait: summarize(stats.queueWait),
        execution: summarize(stats.execution),
        endToEnd: summarize(stats.endToEnd),
      }));
  }

  /** The buckets a window reads: its own ring, plus the seconds not yet added into it. */
  #bucketsOf(window: MetricWindow, nowMs: number): Bucket[] {
    const fromMs = nowMs - METRIC_WINDOWS[window];
    if (window === '1m') return this.#fine.bucketsBetween(fromMs, nowMs);
    const ring = window === '5m' ? this.#mid : this.#coarse;
    return [...ring.bucketsBetween(fromMs, nowMs), ...this.#fine.bucketsBetween(fromMs, nowMs).filter((b) => !b.rolledUp)];
  }

  /** Records into the second of `atMs`; a sample for a second already rolled up goes into the coarser rings directly. */
  #add(atMs: number, nowMs: number, combo: string, apply: (stats: GroupStats) => void): void {
    const fine = this.#fine.holds(atMs, nowMs) ? this.#fine.bucketAt(atMs) : undefined;
    if (fine) apply(fine.stats(combo));
    if (fine && !fine.rolledUp) return;
    for (const ring of [this.#mid, this.#coarse]) if (ring.holds(atMs, nowMs)) apply(ring.bucketAt(atMs).stats(combo));
  }

  /** Adds every finished second into the five-second and one-minute rings, once. */
  #rollUp(nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    if (second === this.#rolledSecond) return;
    this.#rolledSecond = second;
    for (const bucket of this.#fine.buckets()) {
      if (bucket.rolledUp || bucket.startMs + this.#fine.bucketMs > nowMs) continue;
      bucket.rolledUp = true;
      for (const ring of [this.#mid, this.#coarse]) if (ring.holds(bucket.startMs, nowMs)) ring.bucketAt(bucket.startMs).merge(bucket);
    }
  }
}
