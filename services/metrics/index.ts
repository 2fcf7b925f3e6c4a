export { MAX_WINDOW_MS, MetricsRecorder } from './metrics-recorder.js';
export { createMetricsService, followLifecycleEvents } from './metrics-service.js';
