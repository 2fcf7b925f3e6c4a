import { Evidence, type OutcomeStatus, type Task } from '../../common/proto.js';

/** What one attempt produced. */
export interface AttemptResult {
  status: OutcomeStatus;
  evidence: Evidence;
  outputs: Record<string, string>;
}

/** Runs the stages of one framework. */
export interface FrameworkAdapter {
  readonly framework: string;
  /**
   * Runs one attempt. `signal` aborts it (cancellation or shutdown): the
   * adapter stops its work (for processes, the whole process group) and resolves.
   */
  run(task: Task, signal: AbortSignal): Promise<AttemptResult>;
}

/** Evidence with every field present, for adapters to fill in. */
export function emptyEvidence(fields: Partial<Evidence> = {}): Evidence {
  return Evidence.fromPartial(fields);
}
