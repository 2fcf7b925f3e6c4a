import { endAttemptWork, startAttemptWork, traceHop, TracedComponent, type AttemptFields, type TracedWork } from '../common/telemetry.js';
import type { Outcome } from '../common/proto.js';

/** Starts the scheduler's span of a stage attempt, from dispatch to outcome, under the run's trace. */
export function startStageSpan(runTraceparent: string | undefined, fields: AttemptFields): TracedWork | undefined {
  return startAttemptWork(TracedComponent.SCHEDULER, `stage ${fields.stageId}`, runTraceparent, fields);
}

/**
 * Ends the stage attempt's span with the state its outcome leads to, and
 * records the outcome's arrival as a span under the trace it came back with
 * (worker → coordinator → scheduler). Returns the traceparent the stage's
 * events carry from then on ('' while tracing is off).
 */
export function finishStageSpan(work: TracedWork | undefined, outcome: Outcome, state: string): string {
  if (!work) return '';
  endAttemptWork(work, state, outcome.evidence?.error);
  return traceHop(TracedComponent.SCHEDULER, 'apply outcome', outcome.traceparent || work.traceparent, { ...work.attributes, 'stagemesh.outcome': state });
}
