import { endAttemptWork, startAttemptWork, TracedComponent, type TracedWork } from '../common/telemetry.js';
import { OutcomeStatus, type Outcome, type Task } from '../common/proto.js';

/** Starts the worker's span of one attempt, continuing the task's trace (undefined while tracing is off). */
export function startAttemptSpan(task: Task, nodeId: string): TracedWork | undefined {
  return startAttemptWork(TracedComponent.WORKER, `run ${task.framework} stage`, task.traceparent, task, nodeId);
}

/** Ends the attempt's span with its outcome and makes the outcome carry the trace back to the coordinator. */
export function endAttemptSpan(work: TracedWork | undefined, outcome: Outcome): void {
  if (!work) return;
  endAttemptWork(work, (OutcomeStatus[outcome.status] ?? '').replace('OUTCOME_STATUS_', ''), outcome.evidence?.error);
  outcome.traceparent = work.traceparent;
}
