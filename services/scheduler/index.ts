export { resolveExpressions, type ExpressionContext } from './expressions.js';
export { RunStore, type ChangeSet, type RunStatus } from './run-store.js';
export { retryDelayMs, Scheduler, type SchedulerOptions } from './scheduler.js';
export { createSchedulerService } from './scheduler-service.js';
