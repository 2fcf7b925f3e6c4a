import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { RunSample, StageSample } from './window-stats.js';

/** Histogram buckets in seconds: from a noop stage (1 ms) to a long test suite (1 h). */
const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

let processRegistry: Registry | undefined;

/** Node process metrics (CPU, memory, event-loop lag, GC), collected once per process whatever the meshes in it. */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * The Prometheus text exposition of one metrics service: counters and
 * histograms of finished stages and runs, regressions, and the Node process
 * metrics. Labels stay bounded: framework, outcome and run state, never run,
 * stage or pipeline ids (Query answers per pipeline and node).
 */
export class PrometheusExposition {
  readonly #registry = new Registry();
  readonly #stages = new Counter({ name: 'stagemesh_stages_total', help: 'Finished stage attempts, by framework and outcome (succeeded, failed, cancelled, retrying).', labelNames: ['framework', 'outcome'], registers: [this.#registry] });
  readonly #runs = new Counter({ name: 'stagemesh_runs_total', help: 'Finished runs, by final state.', labelNames: ['state'], registers: [this.#registry] });
  readonly #duration = new Histogram({ name: 'stagemesh_stage_duration_seconds', help: 'Execution time of stage attempts on the worker.', labelNames: ['framework'], buckets: LATENCY_BUCKETS_S, registers: [this.#registry] });
  readonly #queueWait = new Histogram({ name: 'stagemesh_stage_queue_wait_seconds', help: 'Time from stage.ready until the worker ran the stage (end-to-end minus execution).', labelNames: ['framework'], buckets: LATENCY_BUCKETS_S, registers: [this.#registry] });
  readonly #endToEnd = new Histogram({ name: 'stagemesh_stage_end_to_end_seconds', help: 'Time from stage.ready until the stage outcome was recorded.', labelNames: ['framework'], buckets: LATENCY_BUCKETS_S, registers: [this.#registry] });
  readonly #regressions = new Counter({ name: 'stagemesh_regressions_total', help: 'metrics.regression events published, by baseline and metric.', labelNames: ['baseline', 'metric'], registers: [this.#registry] });

  constructor() {
    processMetrics();
  }

  /** MIME type of text(). */
  get contentType(): string {
    return this.#registry.contentType;
  }

  observeStage(sample: StageSample): void {
    const framework = sample.framework;
    this.#stages.inc({ framework, outcome: sample.outcome });
    this.#duration.observe({ framework }, sample.executionMs / 1000);
    if (sample.queueWaitMs !== undefined) this.#queueWait.observe({ framework }, sample.queueWaitMs / 1000);
    if (sample.endToEndMs !== undefined) this.#endToEnd.observe({ framework }, sample.endToEndMs / 1000);
  }

  observeRun(sample: RunSample): void {
    this.#runs.inc({ state: sample.state || 'UNKNOWN' });
  }

  countRegression(baseline: string, metric: string): void {
    this.#regressions.inc({ baseline, metric });
  }

  /** The exposition text: stagemesh metrics, then the Node process metrics. */
  async text(): Promise<string> {
    const [own, process] = await Promise.all([this.#registry.metrics(), processMetrics().metrics()]);
    return `${own}\n${process}`;
  }
}
