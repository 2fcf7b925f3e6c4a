/** Keeps the last `maxBytes` of a stream of text, for an attempt's log tail. */
export class TailBuffer {
  #chunks: Buffer[] = [];
  #bytes = 0;
  #dropped = false;

  constructor(private readonly maxBytes = 8 * 1024) {}

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    while (this.#bytes - (this.#chunks[0]?.length ?? 0) >= this.maxBytes && this.#chunks.length > 1) {
      this.#bytes -= this.#chunks.shift()!.length;
      this.#dropped = true;
    }
  }

  toString(): string {
    const all = Buffer.concat(this.#chunks);
    const tail = all.length > this.maxBytes ? all.subarray(all.length - this.maxBytes) : all;
    return (this.#dropped || all.length > this.maxBytes ? '…' : '') + tail.toString('utf8');
  }
}
