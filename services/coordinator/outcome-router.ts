import { callUnary } from '../common/grpc-client.js';
import type { InstanceClients } from '../common/discovery.js';
import type { Logger } from '../common/logger.js';
import { ReportOutcomesRequest, type Outcome, type SchedulerClient } from '../common/proto.js';

/** Longest a ReportOutcomes call may take. */
const CALL_TIMEOUT_MS = 10_000;
/** Delay before sending again outcomes whose scheduler could not be reached. */
const RETRY_MS = 250;

export interface OutcomeRouterOptions {
  logger: Logger;
  /**
   * How long outcomes wait for a scheduler replica missing from Consul's
   * healthy list before they are dropped: by then a peer has claimed its runs
   * and started their stages again. @default 30000
   */
  giveUpMs?: number;
}

/**
 * A coordinator replica's side of outcome reporting in the distributed
 * profile: each outcome goes back to the scheduler replica that owns its run
 * (the task's scheduler_id), in one batch per replica. Outcomes of a replica
 * that cannot be reached are kept and sent again; once it has been missing
 * from Consul for `giveUpMs`, they are dropped and counted.
 */
export class OutcomeRouter {
  /** Outcomes waiting for their scheduler, by its id, with when it was first found missing. */
  readonly #waiting = new Map<string, { outcomes: Outcome[]; missingSince?: number; timer?: NodeJS.Timeout }>();
  #roundRobin = 0;
  #closed = false;
  /** Outcomes dropped because their scheduler replica stayed gone. */
  dropped = 0;

  constructor(
    private readonly schedulers: InstanceClients<SchedulerClient>,
    private readonly options: OutcomeRouterOptions,
  ) {}

  /** Sends outcomes to their schedulers; never rejects (what cannot go now is kept and retried). */
  async report(outcomes: Outcome[]): Promise<void> {
    const bySchedulers = new Map<string, Outcome[]>();
    for (const outcome of outcomes) {
      const group = bySchedulers.get(outcome.schedulerId);
      if (group) group.push(outcome);
      else bySchedulers.set(outcome.schedulerId, [outcome]);
    }
    await Promise.all([...bySchedulers].map(([schedulerId, group]) => this.#send(schedulerId, group)));
  }

  async #send(schedulerId: string, outcomes: Outcome[]): Promise<void> {
    const waiting = this.#waiting.get(schedulerId);
    const client = schedulerId ? this.schedulers.get(schedulerId) : this.#anyScheduler();
    if (client) {
      try {
        await callUnary(client.reportOutcomes.bind(client), ReportOutcomesRequest.fromPartial({ outcomes }), { timeoutMs: CALL_TIMEOUT_MS });
        if (waiting) waiting.missingSince = undefined;
        return;
      } catch (err) {
        this.options.logger.warn({ err: (err as Error).message, scheduler: schedulerId, outcomes: outcomes.length }, 'reporting outcomes failed; will retry');
      }
    }
    const entry = waiting ?? { outcomes: [] };
    this.#waiting.set(schedulerId, entry);
    if (!client) entry.missingSince ??= Date.now();
    if (entry.missingSince !== undefined && Date.now() - entry.missingSince >= (this.options.giveUpMs ?? 30_000)) {
      this.dropped += outcomes.length + entry.outcomes.length;
      this.options.logger.warn({ scheduler: schedulerId, outcomes: outcomes.length + entry.outcomes.length }, 'dropping outcomes of a scheduler that left the mesh; a peer runs its stages again');
      clearTimeout(entry.timer);
      this.#waiting.delete(schedulerId);
      return;
    }
    entry.outcomes.push(...outcomes);
    if (!entry.timer && !this.#closed) {
      entry.timer = setTimeout(() => {
        entry.timer = undefined;
        void this.#send(schedulerId, entry.outcomes.splice(0));
      }, RETRY_MS);
      entry.timer.unref();
    }
  }

  /** Outcomes without an owner (a task of a one-process scheduler) go to any replica, in turn. */
  #anyScheduler(): SchedulerClient | undefined {
    const all = this.schedulers.list();
    return all[this.#roundRobin++ % Math.max(1, all.length)]?.client;
  }

  /** Outcomes waiting for an unreachable scheduler. */
  get waiting(): number {
    let n = 0;
    for (const entry of this.#waiting.values()) n += entry.outcomes.length;
    return n;
  }

  close(): void {
    this.#closed = true;
    for (const entry of this.#waiting.values()) clearTimeout(entry.timer);
  }
}
