import { lifecycleEvent } from '../common/event-publisher.js';
import type { Logger } from '../common/logger.js';
import { GroupBy, type Baseline, type Event } from '../common/proto.js';
import { METRIC_WINDOWS, type MetricsRecorder, type MetricWindow } from './metrics-recorder.js';

/** The figures a baseline holds, by the name a regression event gives them. */
export const RegressionMetric = {
  THROUGHPUT: 'stages_per_sec',
  P95_LATENCY: 'p95_ms',
} as const;
export type RegressionMetric = (typeof RegressionMetric)[keyof typeof RegressionMetric];

/** The evidence of one regression: the `data` of a `metrics.regression` event. */
export interface Regression {
  baseline: string;
  metric: RegressionMetric;
  expected: number;
  observed: number;
  /** The bound the observed figure crossed: expected × (1 − tolerance) for throughput, × (1 + tolerance) for latency. */
  threshold: number;
  tolerance: number;
  window: string;
  group_by: string;
  group: string;
  /** Finished stages in the window. */
  samples: number;
}

export interface RegressionDetectorOptions {
  recorder: MetricsRecorder;
  /** The baselines to compare against (read at every check, so every replica sees the same). */
  baselines: () => Promise<Baseline[]>;
  /** Publishes a metrics.regression event; must not block. */
  publish: (event: Event) => void;
  logger: Logger;
  /** Time between checks. @default 10000 */
  intervalMs?: number;
  /** Called for each regression published (the Prometheus counter). */
  onRegression?: (regression: Regression) => void;
  /** @default Date.now */
  now?: () => number;
}

const SOURCE = 'stagemesh/metrics';

const groupByName = (groupBy: GroupBy) => (GroupBy[groupBy] ?? '').replace(/^GROUP_BY_/, '').toLowerCase().replace('unspecified', '');

/** Compares the recorder's current window with each baseline; returns what regressed. */
export function findRegressions(recorder: MetricsRecorder, baseline: Baseline): Regression[] {
  const window = baseline.window as MetricWindow;
  const series = recorder.query(window, baseline.groupBy).find((s) => s.group === (baseline.groupBy === GroupBy.GROUP_BY_UNSPECIFIED ? '' : baseline.group));
  if (!series) return [];
  const samples = series.stagesSucceeded + series.stagesFailed;
  if (samples < baseline.minSamples) return [];
  const common = { baseline: baseline.name, tolerance: baseline.tolerance, window: baseline.window, group_by: groupByName(baseline.groupBy), group: baseline.group, samples };
  const found: Regression[] = [];
  const minThroughput = baseline.stagesPerSec * (1 - baseline.tolerance);
  if (baseline.stagesPerSec > 0 && series.stagesPerSec < minThroughput) {
    found.push({ ...common, metric: RegressionMetric.THROUGHPUT, expected: baseline.stagesPerSec, observed: series.stagesPerSec, threshold: minThroughput });
  }
  const maxP95 = baseline.p95Ms * (1 + baseline.tolerance);
  const latency = series.endToEnd;
  if (baseline.p95Ms > 0 && latency && latency.count >= baseline.minSamples && latency.p95Ms > maxP95) {
    found.push({ ...common, metric: RegressionMetric.P95_LATENCY, expected: baseline.p95Ms, observed: latency.p95Ms, threshold: maxP95 });
  }
  return found;
}

/**
 * Checks the baselines periodically and publishes `metrics.regression` with
 * the evidence when throughput or p95 latency regressed past the tolerance.
 * One baseline and metric raise at most one event per length of its window
 * (a 5m baseline at most every 5 minutes while the regression lasts); storing
 * the baseline again starts afresh.
 */
export class RegressionDetector {
  readonly #lastPublished = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;
  readonly #now: () => number;
  #checking?: Promise<Regression[]>;

  constructor(private readonly options: RegressionDetectorOptions) {
    this.#now = options.now ?? Date.now;
    this.#timer = setInterval(() => void this.check().catch((err) => options.logger.warn({ err }, 'regression check failed')), options.intervalMs ?? 10_000);
    this.#timer.unref();
  }

  /** Runs one check now; resolves to the regressions published by it. */
  check(): Promise<Regression[]> {
    this.#checking ??= this.#check().finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  async #check(): Promise<Regression[]> {
    const published: Regression[] = [];
    for (const baseline of await this.options.baselines()) {
      for (const regression of findRegressions(this.options.recorder, baseline)) {
        const key = `${baseline.name}\u0000${baseline.updatedAt?.getTime() ?? 0}\u0000${regression.metric}`;
        const nowMs = this.#now();
        const last = this.#lastPublished.get(key);
        if (last !== undefined && nowMs - last < METRIC_WINDOWS[baseline.window as MetricWindow]) continue;
        this.#lastPublished.set(key, nowMs);
        this.options.publish(lifecycleEvent('metrics.regression', SOURCE, `baseline/${baseline.name}`, { baseline: baseline.name, metric: regression.metric }, { ...regression }, baseline.name));
        this.options.onRegression?.(regression);
        this.options.logger.warn({ regression }, 'metrics regression');
        published.push(regression);
      }
    }
    return published;
  }

  /** Stops the periodic check. */
  stop(): void {
    clearInterval(this.#timer);
  }
}
