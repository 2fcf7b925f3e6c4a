// Tests run by the `api` stage of examples/multi-framework.yaml with mocha.
const assert = require('node:assert/strict');

describe('api', () => {
  it('answers with JSON', () => assert.deepEqual(JSON.parse('{"ok":true}'), { ok: true }));
  it('keeps the order of items', () => assert.deepEqual([3, 1, 2].sort(), [1, 2, 3]));
  it.skip('paginates', () => undefined);
});
