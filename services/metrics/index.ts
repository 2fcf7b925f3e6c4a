export { MetricsService, followLifecycleEvents, type MetricsServiceOptions } from './metrics-service.js';
export { isMetricWindow, MAX_WINDOW_MS, METRIC_WINDOWS, MetricsRecorder, type MetricsRecorderOptions, type MetricWindow } from './metrics-recorder.js';
export { BaselineStore, DEFAULT_MIN_SAMPLES, DEFAULT_TOLERANCE, resolveBaseline } from './baseline-store.js';
export { findRegressions, RegressionDetector, RegressionMetric, type Regression, type RegressionDetectorOptions } from './regression-detector.js';
export { PrometheusExposition } from './prometheus-exposition.js';
export { StageOutcome, type RunSample, type StageSample } from './window-stats.js';
