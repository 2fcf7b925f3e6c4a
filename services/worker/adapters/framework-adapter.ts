import { Evidence, type OutcomeStatus, type Task } from '../../common/proto.js';

/** What one attempt produced. */
export interface AttemptResult {
  status: OutcomeStatus;
  evidence: Evidence;
  outputs: Record<string, string>;
}

/**
 * The cancellation of one attempt: the worker cancels it when its run is
 * cancelled, its lease lapses or the worker stops. An adapter reacts through
 * onCancel, or through `signal` where an API takes an AbortSignal. The signal
 * is made only when first read: most attempts (noop and sleep stages, at
 * thousands a second) end without one, and an AbortController with its
 * listeners cost more than such a stage.
 */
export class AttemptControl {
  #cancelled = false;
  #listeners?: (() => void)[];
  #controller?: AbortController;

  get cancelled(): boolean {
    return this.#cancelled;
  }

  /** Calls `listener` once when the attempt is cancelled (at once if it already is). */
  onCancel(listener: () => void): void {
    if (this.#cancelled) listener();
    else (this.#listeners ??= []).push(listener);
  }

  /** Aborts when the attempt is cancelled. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      const controller = (this.#controller = new AbortController());
      this.onCancel(() => controller.abort());
    }
    return this.#controller.signal;
  }

  /** Cancels the attempt; a second call does nothing. */
  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    const listeners = this.#listeners ?? [];
    this.#listeners = undefined;
    for (const listener of listeners) listener();
  }
}

/** Runs the stages of one framework. */
export interface FrameworkAdapter {
  readonly framework: string;
  /**
   * Runs one attempt. When `attempt` is cancelled the adapter stops its work
   * (for processes, the whole process group) and resolves.
   */
  run(task: Task, attempt: AttemptControl): Promise<AttemptResult>;
}

/** Evidence with every field present, for adapters to fill in. */
export function emptyEvidence(fields: Partial<Evidence> = {}): Evidence {
  return Evidence.fromPartial(fields);
}
