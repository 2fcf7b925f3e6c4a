import type { Store } from '../common/store.js';

/** SQLSTATE stagemesh_fence raises for a scheduler whose runs a peer took (migration 12). */
export const FENCED_SQLSTATE = 'SM001';

/** True for the error a commit of a fenced scheduler fails with. */
export function isFencedError(err: unknown): boolean {
  return (err as { code?: unknown } | undefined)?.code === FENCED_SQLSTATE;
}

/**
 * Which scheduler replica advances which run, when several share one
 * PostgreSQL (the distributed profile). Each replica holds a row in
 * `scheduler_instances` that it renews every few seconds; it owns the runs
 * it started and the runs it claimed. A replica that stops renewing (a crash,
 * a partition from the database) loses its runs to the first peer whose
 * claim finds its row expired: the claim deletes the row and takes its
 * unfinished runs in one statement, so exactly one peer gets each run. Its
 * commits carry stagemesh_fence, which fails once the row is gone, so a
 * replica that was only slow can no longer advance a run it lost.
 */
export class RunOwnership {
  constructor(
    private readonly store: Store,
    readonly instanceId: string,
    /** How long a row lives without renewal. */
    readonly ttlMs: number,
  ) {}

  /** Enters (or re-enters, after being fenced) the set of live replicas. */
  async join(): Promise<void> {
    await this.store.query(
      `INSERT INTO scheduler_instances (instance_id, expires_at) VALUES ($1, now() + $2 * interval '1 millisecond')
       ON CONFLICT (instance_id) DO UPDATE SET expires_at = EXCLUDED.expires_at`,
      [this.instanceId, this.ttlMs],
    );
  }

  /**
   * Extends the row's life. False when the row is gone: a peer took this
   * replica's runs, and it must forget them (and join again to take others).
   * Renewing a row that expired but was not yet taken is safe: a peer's claim
   * locks the row, so one of the two sees the other's change.
   */
  async renew(): Promise<boolean> {
    const rows = await this.store.query(`UPDATE scheduler_instances SET expires_at = now() + $2 * interval '1 millisecond' WHERE instance_id = $1 RETURNING 1`, [
      this.instanceId,
      this.ttlMs,
    ]);
    return rows.length > 0;
  }

  /** Leaves at shutdown: the runs still unfinished go to the next peer that claims, at once. */
  async leave(): Promise<void> {
    await this.store.query('DELETE FROM scheduler_instances WHERE instance_id = $1', [this.instanceId]);
  }

  /** The replica advancing a run, while it is unfinished. */
  async ownerOf(runId: string): Promise<string | undefined> {
    const [row] = await this.store.query<{ owner: string | null }>(`SELECT owner FROM runs WHERE run_id = $1 AND state IN ('PENDING', 'RUNNING')`, [runId]);
    return row?.owner ?? undefined;
  }

  /**
   * Takes the unfinished runs that have no live owner (their owner's row
   * expired or is gone, or they have none) and, with `includeOwn`, lists the
   * unfinished runs this replica already owns (resuming after a failed
   * commit). Returns their ids, oldest first. Takes nothing while this
   * replica's own row is missing.
   */
  async claim({ includeOwn }: { includeOwn: boolean }): Promise<string[]> {
    const rows = await this.store.query<{ run_id: string; created_at: Date }>(
      `WITH me AS (SELECT 1 FROM scheduler_instances WHERE instance_id = $1),
            dead AS (DELETE FROM scheduler_instances WHERE expires_at < now() AND instance_id <> $1 RETURNING instance_id)
       UPDATE runs r SET owner = $1
        WHERE r.state IN ('PENDING', 'RUNNING') AND EXISTS (SELECT 1 FROM me)
          AND (r.owner IS NULL OR ($2 AND r.owner = $1) OR r.owner IN (SELECT instance_id FROM dead)
               OR (r.owner <> $1 AND NOT EXISTS (SELECT 1 FROM scheduler_instances i WHERE i.instance_id = r.owner)))
       RETURNING r.run_id, r.created_at`,
      [this.instanceId, includeOwn],
    );
    return rows.sort((a, b) => a.created_at.getTime() - b.created_at.getTime()).map((r) => r.run_id);
  }
}
