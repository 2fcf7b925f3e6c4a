import { randomFillSync } from 'node:crypto';

/** Ids drawn from one fill of the random pool. */
const IDS_PER_FILL = 256;
const pool = Buffer.alloc(16 * IDS_PER_FILL);
let nextInPool = IDS_PER_FILL;
const HEX = Buffer.from('0123456789abcdef', 'latin1');
const text = Buffer.alloc(36);

/**
 * A random (version 4) UUID, like `crypto.randomUUID()`, made as one flat
 * string. `randomUUID()` joins its id from pieces, and V8 keeps such a string
 * as a chain of about twenty linked pieces until something flattens it: some
 * 700 bytes of heap per id. The mesh makes an id for every run, attempt and
 * event and holds many of them for seconds (the event log, the run mirror),
 * so they survived into the old generation and made about a tenth of what it
 * had to collect there under load. Written from bytes, an id is one 36-byte
 * string.
 */
export function newId(): string {
  if (nextInPool === IDS_PER_FILL) {
    randomFillSync(pool);
    nextInPool = 0;
  }
  const at = 16 * nextInPool++;
  pool[at + 6] = (pool[at + 6]! & 0x0f) | 0x40; // version 4
  pool[at + 8] = (pool[at + 8]! & 0x3f) | 0x80; // RFC 4122 variant
  let out = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) text[out++] = 0x2d; // '-'
    const byte = pool[at + i]!;
    text[out++] = HEX[byte >> 4]!;
    text[out++] = HEX[byte & 0x0f]!;
  }
  return text.toString('latin1');
}
