import assert from 'node:assert/strict';
import { newId } from './ids.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('newId', () => {
  it('makes version-4 UUIDs, distinct across several fills of its random pool', () => {
    const ids = Array.from({ length: 2_000 }, () => newId());
    for (const id of ids) assert.match(id, UUID_V4);
    assert.equal(new Set(ids).size, ids.length);
  });

  it('uses every hex digit in every free position', () => {
    // 4,000 ids give each of the 30 free digit positions 4,000 draws: missing a digit by chance is about 16 × (15/16)^4000.
    const ids = Array.from({ length: 4_000 }, () => newId().replaceAll('-', ''));
    for (const position of [0, 5, 11, 13, 17, 31]) {
      assert.equal(new Set(ids.map((id) => id[position])).size, 16, `position ${position}`);
    }
  });
});
