import { parseDurationMs } from '../../common/duration.js';
import { OutcomeStatus, type Task } from '../../common/proto.js';
import { emptyEvidence, type AttemptControl, type AttemptResult, type FrameworkAdapter } from './framework-adapter.js';

/** `noop` succeeds at once and `sleep` waits `run.duration`: stages for benchmarks and tests. */
export class SleepAdapter implements FrameworkAdapter {
  constructor(readonly framework: 'noop' | 'sleep') {}

  run(task: Task, attempt: AttemptControl): Promise<AttemptResult> {
    const started = Date.now();
    const ms = this.framework === 'sleep' ? parseDurationMs(String((task.run ?? {}).duration ?? '0ms')) ?? 0 : 0;
    const ended = (status: OutcomeStatus, error = ''): AttemptResult => ({ status, evidence: emptyEvidence({ durationMs: Date.now() - started, error }), outputs: {} });
    if (ms <= 0) return Promise.resolve(ended(OutcomeStatus.OUTCOME_STATUS_SUCCEEDED));
    // A timer and a cancel listener: no AbortSignal, which would cost more than the stage itself.
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(ended(OutcomeStatus.OUTCOME_STATUS_SUCCEEDED)), ms);
      attempt.onCancel(() => {
        clearTimeout(timer);
        resolve(ended(OutcomeStatus.OUTCOME_STATUS_CANCELLED, 'cancelled'));
      });
    });
  }
}
