import { status, type ServiceError } from '@grpc/grpc-js';
import { parseDurationMs } from '../common/duration.js';
import { InvalidArgumentError } from '../common/errors.js';
import { unary } from '../common/handlers.js';
import type { ServiceRegistration } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import { MetricsService as MetricsDefinition, SERVICE_NAMES, type EventBusClient, type MetricsServer, type SubscribeResponse } from '../common/proto.js';
import { MAX_WINDOW_MS, type MetricsRecorder } from './metrics-recorder.js';

/** Delay before subscribing again after the event stream broke. */
const RESUBSCRIBE_DELAY_MS = 500;

/**
 * Feeds the recorder from the event bus (stage.* and run.* events), resuming
 * after the last sequence seen when the stream breaks. Nothing on the hot
 * path waits for this. Returns a function that stops it.
 */
export function followLifecycleEvents(client: EventBusClient, recorder: MetricsRecorder, logger: Logger): () => void {
  let stopped = false;
  let lastSequence = 0;
  let timer: NodeJS.Timeout | undefined;
  let cancel: () => void = () => undefined;
  const subscribe = () => {
    const stream = client.subscribe({
      subjects: ['stage.>', 'run.>'],
      filter: {},
      consumer: '',
      ackTimeout: '',
      maxDeliver: 0,
      ...(lastSequence ? { fromSequence: lastSequence + 1 } : { newOnly: true }),
    });
    cancel = () => stream.cancel();
    stream.on('data', (message: SubscribeResponse) => {
      if (!message.event) return;
      lastSequence = message.event.sequence;
      recorder.record(message.event);
    });
    stream.on('error', (err: ServiceError) => {
      if (!stopped && err.code !== status.CANCELLED) logger.warn({ err: err.message }, 'metrics lost its event stream; resubscribing');
    });
    stream.on('close', () => {
      if (!stopped) timer = setTimeout(subscribe, RESUBSCRIBE_DELAY_MS);
    });
  };
  subscribe();
  return () => {
    stopped = true;
    clearTimeout(timer);
    cancel();
  };
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
