import { createInbox, type MsgHdrs, type NatsConnection, type Subscription } from 'nats';
import { UnavailableError } from '../common/errors.js';

interface Waiting {
  resolve: (sequence: number) => void;
  reject: (err: Error) => void;
  deadlineMs: number;
}

/**
 * Publishes to JetStream and matches each PubAck through one shared inbox
 * subscription, instead of one request (promise, inbox token and timer) per
 * message as `js.publish` does: about ten times the throughput, which keeps
 * the publish→deliver latency low at 10,000 events/s.
 */
export class PubAckMux {
  readonly #inbox = createInbox();
  readonly #waiting = new Map<number, Waiting>();
  readonly #subscription: Subscription;
  readonly #sweep: NodeJS.Timeout;
  readonly #decoder = new TextDecoder();
  #next = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
  ) {
    this.#subscription = nc.subscribe(`${this.#inbox}.*`, {
      callback: (_err, m) => {
        const token = Number(m.subject.slice(this.#inbox.length + 1));
        const waiting = this.#waiting.get(token);
        if (!waiting) return;
        this.#waiting.delete(token);
        try {
          const ack = JSON.parse(this.#decoder.decode(m.data)) as { seq?: number; error?: { description?: string } };
          if (ack.error || typeof ack.seq !== 'number') waiting.reject(new UnavailableError(`JetStream refused the event: ${ack.error?.description ?? 'no sequence in the acknowledgement'}`));
          else waiting.resolve(ack.seq);
        } catch (err) {
          waiting.reject(new UnavailableError('JetStream sent an unreadable acknowledgement', { cause: err }));
        }
      },
    });
    // One timer for every publish in flight, rather than one each.
    this.#sweep = setInterval(() => this.#expire(Date.now()), Math.min(1_000, timeoutMs));
    this.#sweep.unref();
  }

  #expire(nowMs: number): void {
    for (const [token, waiting] of this.#waiting) {
      if (waiting.deadlineMs > nowMs) continue;
      this.#waiting.delete(token);
      waiting.reject(new UnavailableError(`JetStream did not acknowledge the event within ${this.timeoutMs} ms`));
    }
  }

  /** Publishes one message; resolves to its stream sequence once JetStream stored it. */
  publish(subject: string, data: Uint8Array, headers: MsgHdrs): Promise<number> {
    const token = this.#next++;
    const stored = new Promise<number>((resolve, reject) => this.#waiting.set(token, { resolve, reject, deadlineMs: Date.now() + this.timeoutMs }));
    this.nc.publish(subject, data, { reply: `${this.#inbox}.${token}`, headers });
    return stored;
  }

  /** Stops listening; publishes still waiting are rejected. */
  close(): void {
    clearInterval(this.#sweep);
    this.#subscription.unsubscribe();
    for (const waiting of this.#waiting.values()) waiting.reject(new UnavailableError('the event log was closed before JetStream acknowledged the event'));
    this.#waiting.clear();
  }
}
