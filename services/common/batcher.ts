/** Delay before retrying a batch whose flush failed. */
const RETRY_DELAY_MS = 250;

/** Options of a Batcher. */
export interface BatcherOptions<T> {
  /** Sends one batch; a rejected promise puts the items back for the next flush. */
  flush: (items: T[]) => Promise<void>;
  /** Flush as soon as this many items wait. @default 1000 */
  maxBatch?: number;
  /**
   * Longest an item waits before its batch is sent. 0 sends at the end of
   * the current turn of the event loop (setImmediate): what arrived together
   * still goes together, without a timer's millisecond. @default 2
   */
  maxDelayMs?: number;
  /** Items kept when the receiver is down; past this, add() throws. @default 100000 */
  maxPending?: number;
  /** Called when a flush fails (the items are retried). */
  onError?: (err: unknown) => void;
}

/**
 * Collects items and sends them in batches: one call carries many items, the
 * hot-path rule of stagemesh. At most one flush runs at a time, so order is kept.
 */
export class Batcher<T> {
  #items: T[] = [];
  /** Cancels the pending flush (a timer or an immediate), if one is set. */
  #cancelLater?: () => void;
  #flushing?: Promise<void>;
  #closed = false;
  #lastFlushFailed = false;
  readonly #options: Required<Omit<BatcherOptions<T>, 'onError'>> & Pick<BatcherOptions<T>, 'onError'>;

  constructor(options: BatcherOptions<T>) {
    this.#options = { maxBatch: 1000, maxDelayMs: 2, maxPending: 100_000, ...options };
  }

  /** Number of items waiting to be sent. */
  get pending(): number {
    return this.#items.length;
  }

  /** Queues items; never waits for the receiver. @throws Error when maxPending items already wait. */
  add(...items: T[]): void {
    if (this.#items.length + items.length > this.#options.maxPending) {
      throw new Error(`batcher full: ${this.#items.length} items are waiting to be sent`);
    }
    this.#items.push(...items);
    if (this.#items.length >= this.#options.maxBatch) void this.flush();
    else this.#flushLater(this.#options.maxDelayMs);
  }

  /** Sends what is waiting now; resolves when it has been sent or has failed. */
  flush(): Promise<void> {
    this.#cancelLater?.();
    this.#cancelLater = undefined;
    this.#flushing ??= this.#drain().finally(() => {
      this.#flushing = undefined;
      // After a failure, wait before retrying so a receiver that is down is not hammered.
      const delayMs = this.#lastFlushFailed ? RETRY_DELAY_MS : this.#options.maxDelayMs;
      if (this.#items.length > 0 && !this.#closed) this.#flushLater(delayMs);
    });
    return this.#flushing;
  }

  /** Flushes after `delayMs` (0: at the end of this turn of the event loop), unless a flush is already due. */
  #flushLater(delayMs: number): void {
    if (this.#cancelLater) return;
    const fire = () => {
      this.#cancelLater = undefined;
      void this.flush();
    };
    if (delayMs <= 0) {
      const immediate = setImmediate(fire);
      this.#cancelLater = () => clearImmediate(immediate);
    } else {
      const timer = setTimeout(fire, delayMs);
      this.#cancelLater = () => clearTimeout(timer);
    }
  }

  async #drain(): Promise<void> {
    this.#lastFlushFailed = false;
    while (this.#items.length > 0) {
      const batch = this.#items.splice(0, this.#options.maxBatch);
      try {
        await this.#options.flush(batch);
      } catch (err) {
        this.#items.unshift(...batch);
        this.#lastFlushFailed = true;
        this.#options.onError?.(err);
        return;
      }
    }
  }

  /** Flushes what is left (one attempt) and stops the timer. Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
    this.#cancelLater?.();
    this.#cancelLater = undefined;
  }
}
