import { setTimeout as sleep } from 'node:timers/promises';
import { parseDurationMs } from '../../common/duration.js';
import { OutcomeStatus, type Task } from '../../common/proto.js';
import { emptyEvidence, type AttemptResult, type FrameworkAdapter } from './framework-adapter.js';

/** `noop` succeeds at once and `sleep` waits `run.duration`: stages for benchmarks and tests. */
export class SleepAdapter implements FrameworkAdapter {
  constructor(readonly framework: 'noop' | 'sleep') {}

  async run(task: Task, signal: AbortSignal): Promise<AttemptResult> {
    const started = Date.now();
    const ms = this.framework === 'sleep' ? parseDurationMs(String((task.run ?? {}).duration ?? '0ms')) ?? 0 : 0;
    if (ms > 0) {
      try {
        await sleep(ms, undefined, { signal });
      } catch {
        return { status: OutcomeStatus.OUTCOME_STATUS_CANCELLED, evidence: emptyEvidence({ durationMs: Date.now() - started, error: 'cancelled' }), outputs: {} };
      }
    }
    return { status: OutcomeStatus.OUTCOME_STATUS_SUCCEEDED, evidence: emptyEvidence({ durationMs: Date.now() - started }), outputs: {} };
  }
}
