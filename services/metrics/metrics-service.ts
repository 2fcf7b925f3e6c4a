import { parseDurationMs } from '../common/duration.js';
import { InvalidArgumentError } from '../common/errors.js';
import { followEvents } from '../event-bus/follow-events.js';
import type { EventSource } from '../event-bus/event-stream.js';
import { serverStream, unary } from '../common/handlers.js';
import type { ServiceRegistration } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import type { Queryable } from '../common/store.js';
import { handleTracedEvent, TracedComponent } from '../common/telemetry.js';
import { GroupBy, MetricsService as MetricsDefinition, SERVICE_NAMES, type Event, type MetricsServer, type WatchResponse } from '../common/proto.js';
import { BaselineStore, resolveBaseline } from './baseline-store.js';
import { isMetricWindow, MetricsRecorder, type MetricWindow } from './metrics-recorder.js';
import { PrometheusExposition } from './prometheus-exposition.js';
import { RegressionDetector } from './regression-detector.js';

/** Watch intervals accepted: from 100 ms to 1 minute. */
const MIN_WATCH_INTERVAL_MS = 100;
const MAX_WATCH_INTERVAL_MS = 60_000;

/** The window of a Query or Watch request ("1m" when empty). @throws InvalidArgumentError for another value. */
function windowOf(text: string): MetricWindow {
  const window = text || '1m';
  if (!isMetricWindow(window)) throw new InvalidArgumentError('expected one of 1m, 5m, 1h (windows up to 1h)', 'window');
  return window;
}

function groupByOf(groupBy: GroupBy): GroupBy {
  if (groupBy === GroupBy.UNRECOGNIZED || GroupBy[groupBy] === undefined) throw new InvalidArgumentError('expected framework, node or pipeline', 'group_by');
  return groupBy;
}

/**
 * Feeds a recorder from the event bus (stage.* and run.* events). Nothing
 * on the hot path waits for this. Returns a function that stops it.
 */
export function followLifecycleEvents(source: EventSource, recorder: MetricsRecorder, logger: Logger): () => void {
  return followEvents(source, ['stage.>', 'run.>'], (event) => handleTracedEvent(TracedComponent.METRICS, `record ${event.type}`, event, () => recorder.record(event)), logger, 'metrics');
}

export interface MetricsServiceOptions {
  logger: Logger;
  /** The store holding baselines (PGlite or PostgreSQL). */
  store: Queryable;
  /** Publishes metrics.regression events; must not block (an EventPublisher). */
  publish: (event: Event) => void;
  /** Time between regression checks. @default 10000 */
  regressionCheckIntervalMs?: number;
}

/**
 * The metrics service: a recorder of lifecycle events over sliding windows,
 * the Prometheus exposition, stored baselines and the periodic regression
 * check, served as Query, Watch, SetBaseline and ListBaselines.
 */
export class MetricsService {
  readonly exposition = new PrometheusExposition();
  readonly recorder = new MetricsRecorder({ onStage: (s) => this.exposition.observeStage(s), onRun: (s) => this.exposition.observeRun(s) });
  readonly baselines: BaselineStore;
  readonly detector: RegressionDetector;
  #unfollow?: () => void;

  constructor(private readonly options: MetricsServiceOptions) {
    this.baselines = new BaselineStore(options.store);
    this.detector = new RegressionDetector({
      recorder: this.recorder,
      baselines: () => this.baselines.list(),
      publish: options.publish,
      logger: options.logger,
      intervalMs: options.regressionCheckIntervalMs,
      onRegression: (r) => this.exposition.countRegression(r.baseline, r.metric),
    });
  }

  /** Starts following lifecycle events from the bus or the local event log (asynchronously: nothing on the hot path waits for it). */
  follow(source: EventSource): void {
    this.#unfollow?.();
    this.#unfollow = followLifecycleEvents(source, this.recorder, this.options.logger);
  }

  /** The gRPC service. */
  registration(): ServiceRegistration {
    const { logger } = this.options;
    const implementation: MetricsServer = {
      query: unary(logger, async (request) => {
        const window = windowOf(request.window);
        return { window, series: this.recorder.query(window, groupByOf(request.groupBy)) };
      }),
      watch: serverStream(logger, async (request, write: (m: WatchResponse) => Promise<void>, signal) => {
        const window = windowOf(request.window);
        const groupBy = groupByOf(request.groupBy);
        const intervalMs = request.interval ? parseDurationMs(request.interval) : 1_000;
        if (intervalMs === undefined || intervalMs < MIN_WATCH_INTERVAL_MS || intervalMs > MAX_WATCH_INTERVAL_MS) {
          throw new InvalidArgumentError('expected a duration from 100ms to 1m, such as 1s', 'interval');
        }
        while (!signal.aborted) {
          await write({ window, series: this.recorder.query(window, groupBy) });
          await new Promise<void>((resolve) => {
            const timer = setTimeout(done, intervalMs);
            function done() {
              clearTimeout(timer);
              signal.removeEventListener('abort', done);
              resolve();
            }
            signal.addEventListener('abort', done, { once: true });
          });
        }
      }),
      setBaseline: unary(logger, async (request) => ({ baseline: await this.baselines.put(resolveBaseline(request.baseline)) })),
      listBaselines: unary(logger, async () => ({ baselines: await this.baselines.list() })),
    };
    return { name: SERVICE_NAMES.metrics, definition: MetricsDefinition, implementation };
  }

  /** Stops following events and checking baselines. Safe to call twice. */
  stop(): void {
    this.#unfollow?.();
    this.#unfollow = undefined;
    this.detector.stop();
  }
}
