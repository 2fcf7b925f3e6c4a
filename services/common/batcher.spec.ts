import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Batcher } from './batcher.js';

describe('Batcher', () => {
  it('sends items added together in one batch', async () => {
    const batches: number[][] = [];
    const batcher = new Batcher<number>({ flush: async (items) => void batches.push(items), maxDelayMs: 5 });
    batcher.add(1, 2);
    batcher.add(3);
    await sleep(20);
    assert.deepEqual(batches, [[1, 2, 3]]);
  });

  it('with maxDelayMs 0, sends what was added in one turn of the event loop together, at the end of that turn', async () => {
    const batches: number[][] = [];
    const batcher = new Batcher<number>({ flush: async (items) => void batches.push(items), maxDelayMs: 0 });
    batcher.add(1);
    await Promise.resolve();
    batcher.add(2);
    assert.deepEqual(batches, []);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(batches, [[1, 2]]);
    batcher.add(3);
    await batcher.close();
    assert.deepEqual(batches, [[1, 2], [3]]);
  });

  it('flushes at once when a batch is full, in order', async () => {
    const batches: number[][] = [];
    const batcher = new Batcher<number>({ flush: async (items) => void batches.push(items), maxBatch: 2, maxDelayMs: 1000 });
    batcher.add(1, 2, 3);
    await batcher.close();
    assert.deepEqual(batches, [[1, 2], [3]]);
  });

  it('keeps the items of a failed flush and retries them', async () => {
    let fail = true;
    const sent: number[] = [];
    const errors: unknown[] = [];
    const batcher = new Batcher<number>({
      flush: async (items) => {
        if (fail) throw new Error('down');
        sent.push(...items);
      },
      maxDelayMs: 1,
      onError: (err) => errors.push(err),
    });
    batcher.add(1);
    await batcher.flush();
    assert.equal(batcher.pending, 1);
    fail = false;
    await sleep(400);
    assert.deepEqual(sent, [1]);
    assert.equal(errors.length, 1);
    await batcher.close();
  });

  it('refuses items past maxPending', () => {
    const batcher = new Batcher<number>({ flush: () => new Promise(() => undefined), maxPending: 2, maxDelayMs: 1000 });
    batcher.add(1, 2);
    assert.throws(() => batcher.add(3), /full/);
  });
});
