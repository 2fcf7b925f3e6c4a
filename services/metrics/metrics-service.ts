import { parseDurationMs } from '../common/duration.js';
import { InvalidArgumentError } from '../common/errors.js';
import { unary } from '../common/handlers.js';
import type { ServiceRegistration } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import { followEvents } from '../common/follow-events.js';
import { MetricsService as MetricsDefinition, SERVICE_NAMES, type EventBusClient, type MetricsServer } from '../common/proto.js';
import { MAX_WINDOW_MS, type MetricsRecorder } from './metrics-recorder.js';

/**
 * Feeds the recorder from the event bus (stage.* and run.* events). Nothing
 * on the hot path waits for this. Returns a function that stops it.
 */
export function followLifecycleEvents(client: EventBusClient, recorder: MetricsRecorder, logger: Logger): () => void {
  return followEvents(client, ['stage.>', 'run.>'], (event) => recorder.record(event), logger, 'metrics');
}

/** The metrics service: Query over sliding windows. Watch and SetBaseline answer UNIMPLEMENTED in this release. */
export function createMetricsService(logger: Logger, recorder: MetricsRecorder): ServiceRegistration {
  const implementation: Partial<MetricsServer> = {
    query: unary(logger, async (request) => {
      const window = request.window || '1m';
      const windowMs = parseDurationMs(window);
      if (!windowMs || windowMs > MAX_WINDOW_MS) throw new InvalidArgumentError('expected a duration up to 1h, such as 1m, 5m or 1h', 'window');
      return { window, series: recorder.query(windowMs, request.groupBy) };
    }),
  };
  return { name: SERVICE_NAMES.metrics, definition: MetricsDefinition, implementation };
}
