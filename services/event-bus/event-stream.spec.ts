import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { lifecycleEvent } from '../common/event-publisher.js';
import { DEFAULT_MAX_PENDING } from './event-log.js';
import { subscribeEventsResuming, subscribeRequest } from './event-stream.js';
import { startTestEventBus, type TestEventBus } from './testing.js';

describe('subscribeEventsResuming', () => {
  let bus: TestEventBus;
  beforeEach(async () => (bus = await startTestEventBus()));
  afterEach(() => bus.stop());

  it('resumes after the bus ends a subscriber that fell behind, and yields every event once, in order', async function () {
    this.timeout(60_000);
    const controller = new AbortController();
    const ended: ServiceError[] = [];
    const stream = subscribeEventsResuming(bus.client, subscribeRequest({ subjects: ['tick'], newOnly: true }), controller.signal, (err) => ended.push(err));
    const iterator = stream[Symbol.asyncIterator]();
    const append = (count: number, from: number) => bus.log.append(Array.from({ length: count }, (_, i) => lifecycleEvent('tick', 'test', 'clock', {}, { n: from + i })));
    try {
      // The subscription is registered once the first event arrives; the reader then stops reading.
      const first = iterator.next();
      await new Promise((resolve) => setTimeout(resolve, 200));
      await append(1, 0);
      const seen = [((await first).value!.event!.data as { n: number }).n];
      // More than a subscriber may fall behind, fewer than the log keeps: the bus ends the stream, the helper resumes.
      const total = DEFAULT_MAX_PENDING + 2_000;
      await append(total - 1, 1);
      await new Promise((resolve) => setTimeout(resolve, 500));
      for (let i = 1; i < total; i++) {
        const next = await iterator.next();
        assert.equal(next.done, false);
        seen.push((next.value!.event!.data as { n: number }).n);
      }
      assert.ok(ended.length >= 1, 'the bus ended the subscription at least once');
      assert.equal(ended[0]!.code, status.RESOURCE_EXHAUSTED);
      assert.deepEqual(seen, Array.from({ length: total }, (_, i) => i));
    } finally {
      controller.abort();
      await iterator.return?.(undefined);
    }
  });
});
