import type { Finding } from '../common/proto.js';

/**
 * Runtime audit findings per run, in memory and bounded: past `maxRuns` runs
 * the oldest run's findings are dropped first.
 */
export class AuditLog {
  readonly #runs = new Map<string, Finding[]>();

  /** @param maxRuns runs whose findings are kept. @default 10000 */
  constructor(readonly maxRuns = 10_000) {}

  /** Adds findings of one run (a run audited twice keeps the second list). */
  record(runId: string, findings: readonly Finding[]): void {
    this.#runs.delete(runId);
    this.#runs.set(runId, [...findings]);
    while (this.#runs.size > this.maxRuns) this.#runs.delete(this.#runs.keys().next().value!);
  }

  /** The findings of a run; empty when it had none or was never audited. */
  findings(runId: string): Finding[] {
    return [...(this.#runs.get(runId) ?? [])];
  }
}
