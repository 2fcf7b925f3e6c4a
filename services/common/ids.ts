import { randomFillSync } from 'node:crypto';

/** Ids drawn from one fill of the random pool. */
const IDS_PER_FILL = 256;
const pool = Buffer.alloc(16 * IDS_PER_FILL);
let nextInPool = IDS_PER_FILL;
const HEX = Buffer.from('0123456789abcdef', 'latin1');
const text = Buffer.alloc(36);

/** The millisecond of the last id, and the counter that orders the ids made within it. */
let lastMs = 0;
let counter = 0;
const COUNTER_LIMIT = 0x1000; // 12 bits

/**
 * A time-ordered (version 7, RFC 9562) UUID, made as one flat string: the
 * first 48 bits are the Unix time in milliseconds, the next 12 a counter
 * that orders the ids of one millisecond (it starts at a random value below
 * 2,048 each millisecond; should it overflow, the id borrows the next
 * millisecond), the remaining 62 random.
 *
 * Time order makes the store's indexes cheaper to write: the run, stage and
 * attempt rows a commit inserts go to the last pages of their indexes
 * instead of to pages scattered across all of them (applying the ended
 * stages of sustained load took a third less; docs/performance.md, change
 * 32).
 *
 * Written from bytes, an id is one 36-byte string. `crypto.randomUUID()`
 * joins its id from pieces, which V8 keeps as a chain of about twenty linked
 * pieces until something flattens it, some 700 bytes of heap per id; the
 * mesh holds an id for every run, attempt and event for seconds.
 */
export function newId(): string {
  if (nextInPool === IDS_PER_FILL) {
    randomFillSync(pool);
    nextInPool = 0;
  }
  const at = 16 * nextInPool++;
  const now = Date.now();
  if (now > lastMs) {
    lastMs = now;
    counter = pool[at + 6]! & 0x07; // a random start in the low half: room to count before borrowing a millisecond
    counter = (counter << 8) | pool[at + 7]!;
  } else if (++counter === COUNTER_LIMIT) {
    lastMs++;
    counter = 0;
  }
  // 48 bits of milliseconds, big-endian (two writes: bit operators work on 32 bits).
  pool.writeUInt16BE(Math.floor(lastMs / 0x1_0000_0000), at);
  pool.writeUInt32BE(lastMs % 0x1_0000_0000, at + 2);
  pool[at + 6] = 0x70 | (counter >> 8); // version 7, then the counter's high 4 bits
  pool[at + 7] = counter & 0xff;
  pool[at + 8] = (pool[at + 8]! & 0x3f) | 0x80; // RFC 9562 variant
  let out = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) text[out++] = 0x2d; // '-'
    const byte = pool[at + i]!;
    text[out++] = HEX[byte >> 4]!;
    text[out++] = HEX[byte & 0x0f]!;
  }
  return text.toString('latin1');
}
