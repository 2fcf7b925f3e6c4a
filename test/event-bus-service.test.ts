import { status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { lifecycleEvent } from '../services/common/event-publisher.js';
import { callUnary } from '../services/common/grpc-client.js';
import type { SubscribeResponse } from '../services/common/proto.js';
import { subscribeEvents, subscribeRequest } from '../services/event-bus/event-stream.js';
import { JetStreamEventLog } from '../services/event-bus/jetstream-event-log.js';
import { MemoryEventLog } from '../services/event-bus/memory-event-log.js';
import type { EventLog } from '../services/event-bus/event-log.js';
import { startTestEventBus, type TestEventBus } from '../services/event-bus/testing.js';

const NATS_URL = process.env.STAGEMESH_NATS_URL ?? 'nats://127.0.0.1:4222';

async function jetStreamOrSkip(ctx: Mocha.Context): Promise<{ log: EventLog; cleanup: () => Promise<void> } | undefined> {
  const id = randomUUID().replace(/-/g, '').slice(0, 12);
  try {
    const log = await JetStreamEventLog.open({ servers: NATS_URL, stream: `SMSVC_${id}`, subjectPrefix: `smsvc.${id}`, connectTimeoutMs: 2_000 });
    return { log, cleanup: () => log.destroy().catch(() => undefined) };
  } catch (err) {
    if (process.env.CI === 'true') throw err;
    console.log(`      skipping: ${(err as Error).message}`);
    ctx.skip();
  }
}

for (const backend of ['in-process', 'JetStream'] as const) {
  describe(`event bus - gRPC service over the ${backend} backend`, () => {
    let bus: TestEventBus;
    let cleanup: () => Promise<void> = async () => undefined;

    beforeEach(async function () {
      if (backend === 'in-process') bus = await startTestEventBus(new MemoryEventLog());
      else {
        const opened = await jetStreamOrSkip(this);
        if (!opened) return;
        cleanup = opened.cleanup;
        bus = await startTestEventBus(opened.log);
      }
    });

    afterEach(async () => {
      await cleanup();
      await bus?.stop();
    });

    it('publishes through the API and redelivers to a durable consumer that does not acknowledge', async () => {
      const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      const controller = new AbortController();
      const request = subscribeRequest({ subjects: ['release.*'], consumer: 'ops', ackTimeout: '300ms', maxDeliver: 3, fromSequence: 1 });
      const published = await callUnary(bus.client.publish.bind(bus.client), { event: { ...lifecycleEvent('release.approved', 'user/ci', 'release/7', { pipeline: 'checkout' }, { version: '7' }), headers: { traceparent } } }, { timeoutMs: 5_000 });
      assert.match(published.id, /^[0-9a-f-]{36}$/);
      const seen: SubscribeResponse[] = [];
      for await (const message of subscribeEvents(bus.client, request, controller.signal)) {
        seen.push(message);
        if (seen.length === 2) break;
      }
      controller.abort();
      assert.deepEqual(seen.map((m) => [m.event!.sequence, m.delivery]), [[published.sequence, 1], [published.sequence, 2]]);
      assert.equal(seen[0]!.event!.id, published.id);
      assert.equal(seen[0]!.event!.headers.traceparent, traceparent);
      const info = await callUnary(bus.client.getTopicInfo.bind(bus.client), { subject: 'release.*' }, { timeoutMs: 5_000 });
      assert.equal(info.count, 1);
      assert.deepEqual(info.consumers.map((c) => c.name), ['ops']);
    });

    it('acknowledges through Ack so nothing is redelivered', async () => {
      const controller = new AbortController();
      const request = subscribeRequest({ subjects: ['job.*'], consumer: 'acker', ackTimeout: '300ms', newOnly: true });
      const iterator = subscribeEvents(bus.client, request, controller.signal);
      const first = iterator.next();
      await new Promise((r) => setTimeout(r, 300));
      await callUnary(bus.client.publish.bind(bus.client), { event: lifecycleEvent('job.done', 'user/ci', 'job/1', {}) }, { timeoutMs: 5_000 });
      const { value } = await first;
      const acked = await callUnary(bus.client.ack.bind(bus.client), { consumer: 'acker', sequences: [value!.event!.sequence] }, { timeoutMs: 5_000 });
      assert.equal(acked.acknowledged, 1);
      const again = await Promise.race([iterator.next().then(() => 'redelivered'), new Promise((r) => setTimeout(() => r('quiet'), 900))]);
      controller.abort();
      await iterator.return(undefined);
      assert.equal(again, 'quiet');
    });

    it('answers INVALID_ARGUMENT with the field path for a bad pattern or duration', async () => {
      for (const [request, field] of [
        [subscribeRequest({ subjects: ['run.>', 'a..b'] }), 'subjects[1]'],
        [subscribeRequest({ consumer: 'c', ackTimeout: 'soon' }), 'ack_timeout'],
        [subscribeRequest({ maxDeliver: 3 }), 'consumer'],
      ] as const) {
        await assert.rejects(
          (async () => {
            for await (const _ of subscribeEvents(bus.client, request)) break;
          })(),
          (err: ServiceError) => err.code === status.INVALID_ARGUMENT && err.details.startsWith(field),
        );
      }
    });
  });
}
