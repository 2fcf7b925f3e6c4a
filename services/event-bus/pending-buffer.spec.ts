import assert from 'node:assert/strict';
import { ResourceExhaustedError } from '../common/errors.js';
import { PendingBuffer } from './pending-buffer.js';

async function readAll<T>(buffer: PendingBuffer<T>): Promise<{ items: T[]; error?: unknown }> {
  const items: T[] = [];
  try {
    for await (const item of buffer.drain(new AbortController().signal)) items.push(item);
    return { items };
  } catch (error) {
    return { items, error };
  }
}

describe('PendingBuffer', () => {
  it('hands over what it kept, then says how many items it could not keep', async () => {
    const buffer = new PendingBuffer<number>(3, () => 'resume with from_sequence 4');
    for (let i = 1; i <= 5; i++) buffer.push(i);
    const { items, error } = await readAll(buffer);
    assert.deepEqual(items, [1, 2, 3]);
    assert.ok(error instanceof ResourceExhaustedError);
    assert.match(error.message, /more than 3 events; 2 events were not delivered \(resume with from_sequence 4\)/);
  });

  it('ends after the waiting items, or with the error it was ended with', async () => {
    const ended = new PendingBuffer<number>(10);
    ended.push(1);
    ended.end();
    assert.deepEqual(await readAll(ended), { items: [1] });
    const failed = new PendingBuffer<number>(10);
    failed.end(new Error('gone'));
    assert.equal(((await readAll(failed)).error as Error).message, 'gone');
  });

  it('stops waiting when the reader aborts', async () => {
    const controller = new AbortController();
    const reading = (async () => {
      for await (const _ of new PendingBuffer<number>(10).drain(controller.signal)) assert.fail('nothing was pushed');
    })();
    controller.abort();
    await reading;
  });
});
