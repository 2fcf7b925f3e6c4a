/**
 * The one place application code imports generated contracts from.
 * Generated code lives in generated/ts (DO NOT EDIT; rebuilt by `npm run build`).
 */
export * from '../../generated/ts/stagemesh/v1/pipeline.js';
export * from '../../generated/ts/stagemesh/v1/run.js';
export * from '../../generated/ts/stagemesh/v1/scheduler.js';
export * from '../../generated/ts/stagemesh/v1/coordinator.js';
export * from '../../generated/ts/stagemesh/v1/event_bus.js';
export * from '../../generated/ts/stagemesh/v1/compliance.js';
export * from '../../generated/ts/stagemesh/v1/metrics.js';

/** Fully qualified service names, as health checks and reflection know them. */
export const SERVICE_NAMES = {
  scheduler: 'stagemesh.v1.Scheduler',
  coordinator: 'stagemesh.v1.Coordinator',
  eventBus: 'stagemesh.v1.EventBus',
  compliance: 'stagemesh.v1.Compliance',
  metrics: 'stagemesh.v1.Metrics',
} as const;
export type ServiceName = (typeof SERVICE_NAMES)[keyof typeof SERVICE_NAMES];
