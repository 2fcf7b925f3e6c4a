import { GroupBy, type Event, type LatencySummary, type MetricSeries } from '../common/proto.js';

/** One lifecycle fact the metrics keep. */
interface Sample {
  atMs: number;
  type: string;
  framework: string;
  node: string;
  pipeline: string;
  durationMs: number;
}

/** The longest window Query accepts. */
export const MAX_WINDOW_MS = 3_600_000;

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function summarize(values: number[]): LatencySummary {
  const sorted = values.sort((a, b) => a - b);
  return { count: sorted.length, p50Ms: percentile(sorted, 50), p95Ms: percentile(sorted, 95), p99Ms: percentile(sorted, 99), maxMs: sorted[sorted.length - 1] ?? 0 };
}

/**
 * Counts lifecycle events over sliding windows (up to 1 h), per framework,
 * node or pipeline. Bounded: the oldest samples go first past `maxSamples`.
 */
export class MetricsRecorder {
  readonly #samples: Sample[] = [];

  constructor(private readonly maxSamples = 200_000) {}

  record(event: Event, nowMs = Date.now()): void {
    const data = (event.data ?? {}) as Record<string, unknown>;
    this.#samples.push({
      atMs: event.time?.getTime() ?? nowMs,
      type: event.type,
      framework: event.attributes.framework ?? '',
      node: String(data.node_id ?? event.attributes.node_id ?? ''),
      pipeline: event.attributes.pipeline ?? '',
      durationMs: Number(data.duration_ms ?? 0),
    });
    const cutoff = nowMs - MAX_WINDOW_MS;
    let drop = Math.max(0, this.#samples.length - this.maxSamples);
    while (drop < this.#samples.length && this.#samples[drop]!.atMs < cutoff) drop++;
    if (drop > 0) this.#samples.splice(0, drop);
  }

  /** Figures over the last `windowMs`, one series per group (one series in all when not grouped). */
  query(windowMs: number, groupBy: GroupBy, nowMs = Date.now()): MetricSeries[] {
    const key = (s: Sample) =>
      groupBy === GroupBy.GROUP_BY_FRAMEWORK ? s.framework : groupBy === GroupBy.GROUP_BY_NODE ? s.node : groupBy === GroupBy.GROUP_BY_PIPELINE ? s.pipeline : '';
    const groups = new Map<string, Sample[]>();
    for (const s of this.#samples) {
      if (s.atMs < nowMs - windowMs) continue;
      // run.* events carry no framework or node; they only count in pipeline or ungrouped series.
      if (s.type.startsWith('run.') && (groupBy === GroupBy.GROUP_BY_FRAMEWORK || groupBy === GroupBy.GROUP_BY_NODE)) continue;
      const list = groups.get(key(s)) ?? [];
      list.push(s);
      groups.set(key(s), list);
    }
    if (groups.size === 0 && (groupBy === GroupBy.GROUP_BY_UNSPECIFIED || groupBy === GroupBy.UNRECOGNIZED)) groups.set('', []);
    const seconds = windowMs / 1000;
    return [...groups].sort(([a], [b]) => a.localeCompare(b)).map(([group, samples]) => {
      const count = (type: string) => samples.filter((s) => s.type === type).length;
      const succeeded = count('stage.succeeded');
      const failed = count('stage.failed');
      const finished = count('run.finished');
      return {
        group,
        stagesPerSec: (succeeded + failed) / seconds,
        runsPerSec: finished / seconds,
        stagesSucceeded: succeeded,
        stagesFailed: failed,
        retries: count('stage.retrying'),
        runsFinished: finished,
        queueWait: undefined,
        execution: summarize(samples.filter((s) => s.type === 'stage.succeeded' || s.type === 'stage.failed').map((s) => s.durationMs)),
        endToEnd: undefined,
      };
    });
  }
}
