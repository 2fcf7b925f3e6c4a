import { ResourceExhaustedError } from '../common/errors.js';

/**
 * The bounded buffer between a log and one slow subscriber. `push` never
 * blocks (publishers and other subscribers keep their pace); once `maxPending`
 * items wait, further items are counted instead of kept, and the reader gets
 * ResourceExhaustedError saying how far behind it was, after the items it
 * still had, so no event is ever lost silently.
 */
export class PendingBuffer<T> {
  readonly #items: T[] = [];
  #head = 0;
  #overflow = 0;
  #wake?: () => void;
  #failure?: unknown;
  #ended = false;

  constructor(
    readonly maxPending: number,
    /** Names the position to resume from, for the error message. */
    private readonly resumeHint: () => string = () => 'resume with from_sequence',
  ) {}

  /** Items waiting to be read. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Adds an item, or counts it as lost when the buffer is full. */
  push(item: T): void {
    if (this.size >= this.maxPending) this.#overflow++;
    else this.#items.push(item);
    this.#wakeUp();
  }

  /** Ends the stream after the waiting items, with an error when given. */
  end(err?: unknown): void {
    this.#ended = true;
    this.#failure ??= err;
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Yields the items as they come until `signal` aborts or the buffer ends. */
  async *drain(signal: AbortSignal): AsyncGenerator<T> {
    const onAbort = () => this.#wakeUp();
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted) {
        if (this.size > 0) {
          const item = this.#items[this.#head++]!;
          // Compact now and then so a long-lived subscription does not keep every event it read.
          if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
            this.#items.splice(0, this.#head);
            this.#head = 0;
          }
          yield item;
          continue;
        }
        if (this.#overflow > 0) {
          throw new ResourceExhaustedError(
            `subscriber fell behind by more than ${this.maxPending} events; ${this.#overflow} events were not delivered (${this.resumeHint()})`,
          );
        }
        if (this.#failure !== undefined) throw this.#failure;
        if (this.#ended) return;
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}
