/** One attempt's lease: the node running it and when it lapses. */
export interface Lease {
  attemptId: string;
  nodeId: string;
  expiresAtMs: number;
}

/**
 * Leases of running attempts. An outcome is applied only while its attempt
 * still holds the lease, so each outcome is recorded exactly once.
 */
export class LeaseTable {
  readonly #leases = new Map<string, Lease>();

  constructor(private readonly ttlMs: number) {}

  get size(): number {
    return this.#leases.size;
  }

  grant(attemptId: string, nodeId: string, nowMs = Date.now()): void {
    this.#leases.set(attemptId, { attemptId, nodeId, expiresAtMs: nowMs + this.ttlMs });
  }

  /** Extends the leases a node holds; ids it does not hold are ignored. Returns how many were renewed. */
  renew(attemptIds: readonly string[], nodeId: string, nowMs = Date.now()): number {
    let renewed = 0;
    for (const id of attemptIds) {
      const lease = this.#leases.get(id);
      if (lease && lease.nodeId === nodeId) {
        lease.expiresAtMs = nowMs + this.ttlMs;
        renewed++;
      }
    }
    return renewed;
  }

  /** Ends the lease if `nodeId` holds it; false means the outcome is a duplicate or late. */
  release(attemptId: string, nodeId: string): boolean {
    const lease = this.#leases.get(attemptId);
    if (!lease || lease.nodeId !== nodeId) return false;
    this.#leases.delete(attemptId);
    return true;
  }

  /** Removes and returns the leases that lapsed by `nowMs`. */
  takeExpired(nowMs = Date.now()): Lease[] {
    const expired: Lease[] = [];
    for (const lease of this.#leases.values()) if (lease.expiresAtMs <= nowMs) expired.push(lease);
    for (const lease of expired) this.#leases.delete(lease.attemptId);
    return expired;
  }

  /** Removes and returns every lease of a node (when it disconnects). */
  takeNode(nodeId: string): Lease[] {
    const taken = [...this.#leases.values()].filter((l) => l.nodeId === nodeId);
    for (const lease of taken) this.#leases.delete(lease.attemptId);
    return taken;
  }

  /** Attempt ids of a node currently under lease. */
  heldBy(nodeId: string): string[] {
    return [...this.#leases.values()].filter((l) => l.nodeId === nodeId).map((l) => l.attemptId);
  }
}
