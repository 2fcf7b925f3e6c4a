import { OutcomeStatus, type Event, type EventBusClient, type Task } from '../../common/proto.js';
import { eventMatches } from '../../event-bus/event-match.js';
import { subscribeEventsResuming, subscribeRequest } from '../../event-bus/event-stream.js';
import { emptyEvidence, type AttemptControl, type AttemptResult, type FrameworkAdapter } from './framework-adapter.js';

/** The `run` spec of a wait-event stage. */
export interface WaitEventSpec {
  /** Event type to wait for, e.g. `release.approved` (a subject pattern such as `release.*` works too). */
  event: string;
  /** Values the event must carry: each key is looked up in the event's attributes, then in its data (dotted paths allowed). */
  match?: Record<string, unknown>;
}

/**
 * Runs `wait-event` stages: the stage succeeds when an event of type
 * `run.event` whose attributes or data equal every `run.match` entry is
 * published on the bus (through the API, a user's system or stagemesh itself)
 * after the attempt started. It times out after the stage timeout and stops
 * at once when the attempt is cancelled. Outputs: `event_id`, `event_sequence`,
 * and every declared output found as a top-level field of the event's data.
 */
export class WaitEventAdapter implements FrameworkAdapter {
  readonly framework = 'wait-event';

  /** @param eventBus a client of the event-bus service (the mesh's, or any replica's). */
  constructor(private readonly eventBus: EventBusClient) {}

  async run(task: Task, attempt: AttemptControl): Promise<AttemptResult> {
    const { signal } = attempt;
    const started = Date.now();
    const spec = (task.run ?? {}) as Partial<WaitEventSpec>;
    const result = (status: OutcomeStatus, fields: { error?: string; logTail?: string } = {}, outputs: Record<string, string> = {}): AttemptResult => ({
      status,
      evidence: emptyEvidence({ durationMs: Date.now() - started, ...fields }),
      outputs,
    });
    if (typeof spec.event !== 'string' || spec.event === '') return result(OutcomeStatus.OUTCOME_STATUS_FAILED, { error: 'run.event is required: the event type to wait for' });
    const match = spec.match && typeof spec.match === 'object' ? spec.match : {};
    const timeout = task.timeoutMs > 0 ? AbortSignal.timeout(task.timeoutMs) : undefined;
    const stop = AbortSignal.any(timeout ? [signal, timeout] : [signal]);
    const ended = () => (signal.aborted ? result(OutcomeStatus.OUTCOME_STATUS_CANCELLED, { error: 'cancelled' }) : result(OutcomeStatus.OUTCOME_STATUS_TIMED_OUT, { error: `no matching "${spec.event}" event within ${task.timeoutMs} ms` }));
    // Reading from the attempt's start time catches an event published while the subscription was being set up.
    try {
      for await (const { event } of subscribeEventsResuming(this.eventBus, subscribeRequest({ subjects: [spec.event], fromTime: new Date(started) }), stop)) {
        if (!event || !eventMatches(event, match)) continue;
        const outputs: Record<string, string> = { event_id: event.id, event_sequence: String(event.sequence) };
        for (const name of task.outputs) {
          const value = (event.data ?? {})[name];
          if (value !== undefined && value !== null) outputs[name] = typeof value === 'object' ? JSON.stringify(value) : String(value);
        }
        return result(OutcomeStatus.OUTCOME_STATUS_SUCCEEDED, { logTail: `matched ${event.type} event ${event.id} (sequence ${event.sequence})` }, outputs);
      }
    } catch (err) {
      return result(OutcomeStatus.OUTCOME_STATUS_FAILED, { error: `event bus: ${(err as Error).message}` });
    }
    return ended();
  }
}
