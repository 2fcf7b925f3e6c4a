import { build, type Histogram } from 'hdr-histogram-js';
import type { LatencySummary } from '../common/proto.js';

/** How a finished attempt ended, as the metrics count it. */
export const StageOutcome = {
  SUCCEEDED: 'succeeded',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  RETRYING: 'retrying',
} as const;
export type StageOutcome = (typeof StageOutcome)[keyof typeof StageOutcome];

/** What the metrics group by: one value per dimension. */
export interface GroupKey {
  framework: string;
  node: string;
  pipeline: string;
}

/** One finished attempt of a stage. */
export interface StageSample extends GroupKey {
  atMs: number;
  outcome: StageOutcome;
  /** Time the worker ran the stage. */
  executionMs: number;
  /** From ready to the worker starting it (end-to-end minus execution); undefined when the ready event was not seen. */
  queueWaitMs?: number;
  /** From stage.ready to the outcome being recorded; undefined when the ready event was not seen. */
  endToEndMs?: number;
}

/** One finished run. */
export interface RunSample {
  atMs: number;
  pipeline: string;
  state: string;
}

/**
 * An HDR histogram of milliseconds with two significant digits (1 %
 * precision), resizing itself as larger values arrive.
 */
export function newLatencyHistogram(): Histogram {
  return build({ bitBucketSize: 32, numberOfSignificantValueDigits: 2, autoResize: true });
}

/** Percentiles of a histogram as the contract carries them. */
export function summarize(histogram: Histogram | undefined): LatencySummary {
  if (!histogram || histogram.totalCount === 0) return { count: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, maxMs: 0 };
  return {
    count: histogram.totalCount,
    p50Ms: histogram.getValueAtPercentile(50),
    p95Ms: histogram.getValueAtPercentile(95),
    p99Ms: histogram.getValueAtPercentile(99),
    maxMs: histogram.maxValue,
  };
}

/** Counters and latency histograms of one group over some span of time. */
export class GroupStats {
  succeeded = 0;
  failed = 0;
  cancelled = 0;
  retries = 0;
  runsFinished = 0;
  queueWait?: Histogram;
  execution?: Histogram;
  endToEnd?: Histogram;

  /** Stages that finished (succeeded or failed), the throughput numerator. */
  get stagesFinished(): number {
    return this.succeeded + this.failed;
  }

  addStage(sample: StageSample): void {
    if (sample.outcome === StageOutcome.SUCCEEDED) this.succeeded++;
    else if (sample.outcome === StageOutcome.FAILED) this.failed++;
    else if (sample.outcome === StageOutcome.CANCELLED) this.cancelled++;
    else this.retries++;
    (this.execution ??= newLatencyHistogram()).recordValue(Math.max(0, Math.round(sample.executionMs)));
    if (sample.queueWaitMs !== undefined) (this.queueWait ??= newLatencyHistogram()).recordValue(Math.max(0, Math.round(sample.queueWaitMs)));
    if (sample.endToEndMs !== undefined) (this.endToEnd ??= newLatencyHistogram()).recordValue(Math.max(0, Math.round(sample.endToEndMs)));
  }

  /** Adds another group's counts and histograms into this one. */
  merge(other: GroupStats): void {
    this.succeeded += other.succeeded;
    this.failed += other.failed;
    this.cancelled += other.cancelled;
    this.retries += other.retries;
    this.runsFinished += other.runsFinished;
    if (other.queueWait) (this.queueWait ??= newLatencyHistogram()).add(other.queueWait);
    if (other.execution) (this.execution ??= newLatencyHistogram()).add(other.execution);
    if (other.endToEnd) (this.endToEnd ??= newLatencyHistogram()).add(other.endToEnd);
  }
}

/** The combination key of a sample: every dimension, so any group-by can be answered by merging. */
export function comboKey(key: GroupKey): string {
  return `${key.framework}\u0000${key.node}\u0000${key.pipeline}`;
}

/** The dimensions back from a combination key. */
export function comboParts(combo: string): GroupKey {
  const [framework = '', node = '', pipeline = ''] = combo.split('\u0000');
  return { framework, node, pipeline };
}

/** Combinations one bucket keeps apart; beyond it samples share one "other" combination, so memory stays bounded. */
export const MAX_COMBOS_PER_BUCKET = 1_000;
const OTHER_COMBO = comboKey({ framework: '(other)', node: '(other)', pipeline: '(other)' });

/** The stats of one time bucket, per combination of framework, node and pipeline. */
export class Bucket {
  readonly combos = new Map<string, GroupStats>();
  /** True once this (fine) bucket has been added into the coarser rings. */
  rolledUp = false;

  constructor(readonly startMs: number) {}

  stats(combo: string): GroupStats {
    let stats = this.combos.get(combo);
    if (!stats) {
      if (this.combos.size >= MAX_COMBOS_PER_BUCKET) combo = OTHER_COMBO;
      stats = this.combos.get(combo) ?? new GroupStats();
      this.combos.set(combo, stats);
    }
    return stats;
  }

  merge(other: Bucket): void {
    for (const [combo, stats] of other.combos) this.stats(combo).merge(stats);
  }
}

/**
 * A ring of `slots` buckets of `bucketMs` each: memory is bounded by the
 * ring, whatever the rate of samples.
 */
export class BucketRing {
  readonly #slots: (Bucket | undefined)[];

  constructor(
    readonly bucketMs: number,
    slots: number,
  ) {
    this.#slots = new Array<Bucket | undefined>(slots).fill(undefined);
  }

  get spanMs(): number {
    return this.bucketMs * this.#slots.length;
  }

  /** The bucket holding `atMs`, created (replacing the one it outlived) when needed. */
  bucketAt(atMs: number): Bucket {
    const startMs = Math.floor(atMs / this.bucketMs) * this.bucketMs;
    const index = Math.floor(startMs / this.bucketMs) % this.#slots.length;
    let bucket = this.#slots[index];
    if (!bucket || bucket.startMs !== startMs) this.#slots[index] = bucket = new Bucket(startMs);
    return bucket;
  }

  /** True when a sample at `atMs` still has its own slot in the ring at `nowMs` (it would not overwrite a newer bucket). */
  holds(atMs: number, nowMs: number): boolean {
    return atMs > nowMs - this.spanMs + this.bucketMs && atMs <= nowMs;
  }

  /** Every bucket the ring holds, in slot order. */
  buckets(): Bucket[] {
    return this.#slots.filter((b): b is Bucket => b !== undefined);
  }

  /** Buckets that end after `fromMs` and start no later than `toMs`, oldest first. */
  bucketsBetween(fromMs: number, toMs: number): Bucket[] {
    return this.#slots
      .filter((b): b is Bucket => b !== undefined && b.startMs + this.bucketMs > fromMs && b.startMs <= toMs && b.startMs > toMs - this.spanMs)
      .sort((a, b) => a.startMs - b.startMs);
  }
}
