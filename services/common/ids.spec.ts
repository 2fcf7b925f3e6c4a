import assert from 'node:assert/strict';
import { newId } from './ids.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The Unix milliseconds an id's first 48 bits carry. */
const msOf = (id: string) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);

describe('newId', () => {
  it('makes version-7 UUIDs, distinct and in order across several fills of its random pool', () => {
    const before = Date.now();
    const ids = Array.from({ length: 10_000 }, () => newId());
    const after = Date.now();
    for (const id of ids) assert.match(id, UUID_V7);
    assert.equal(new Set(ids).size, ids.length);
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} before ${ids[i]}`);
    assert.ok(msOf(ids[0]!) >= before, 'the first id carries the time it was made');
    // 10,000 ids in one millisecond would borrow at most a few milliseconds ahead.
    assert.ok(msOf(ids.at(-1)!) <= after + 5, 'the last id carries the time it was made');
  });

  it('uses every hex digit in every random position', () => {
    // 4,000 ids give each position 4,000 draws: missing a digit by chance is about 16 × (15/16)^4000.
    const ids = Array.from({ length: 4_000 }, () => newId().replaceAll('-', ''));
    for (const position of [17, 20, 25, 31]) {
      assert.equal(new Set(ids.map((id) => id[position])).size, 16, `position ${position}`);
    }
  });

  it('stays in order when a millisecond holds more ids than its counter', () => {
    // More than 4,096 ids, most within one millisecond on a fast machine: the counter overflows and borrows.
    const ids = Array.from({ length: 20_000 }, () => newId());
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} before ${ids[i]}`);
  });
});
