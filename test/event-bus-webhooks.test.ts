import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { lifecycleEvent } from '../services/common/event-publisher.js';
import { createLogger } from '../services/common/logger.js';
import { MemoryEventLog } from '../services/event-bus/memory-event-log.js';
import { DEAD_LETTER_TYPE, signWebhook, WebhookForwarder } from '../services/event-bus/webhook-forwarder.js';

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

describe('event bus - outbound webhooks', () => {
  let server: Server;
  let url: string;
  let received: Received[];
  let answer: (n: number) => number;
  let log: MemoryEventLog;
  let forwarder: WebhookForwarder | undefined;
  const logger = createLogger({ level: 'silent' });

  beforeEach(async () => {
    received = [];
    answer = () => 204;
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.statusCode = answer(received.length);
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/stagemesh`;
    log = new MemoryEventLog();
  });

  afterEach(async () => {
    await forwarder?.stop();
    forwarder = undefined;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await log.close();
  });

  async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check() && Date.now() < deadline) await sleep(20);
    assert.ok(check(), 'condition not met in time');
  }

  it('posts matching events as signed CloudEvents structured JSON, in order', async () => {
    forwarder = await WebhookForwarder.start({ log, logger, url, secret: 's3cret', subjects: ['release.*'] });
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await log.append([
      { ...lifecycleEvent('release.approved', 'user/ci', 'release/1', { pipeline: 'checkout' }, { version: '1.2.3' }), headers: { traceparent } },
      lifecycleEvent('run.finished', 'stagemesh/scheduler', 'run/r1', {}),
      lifecycleEvent('release.shipped', 'user/ci', 'release/1', {}, { version: '1.2.3' }),
    ]);
    await until(() => received.length === 2);
    const [first, second] = received;
    assert.equal(first!.headers['content-type'], 'application/cloudevents+json; charset=utf-8');
    const cloudEvent = JSON.parse(first!.body);
    assert.deepEqual([cloudEvent.specversion, cloudEvent.type, cloudEvent.source, cloudEvent.subject], ['1.0', 'release.approved', 'user/ci', 'release/1']);
    assert.deepEqual(cloudEvent.data, { version: '1.2.3' });
    assert.equal(cloudEvent.traceparent, traceparent);
    assert.equal(first!.headers.traceparent, traceparent);
    const signature = String(first!.headers['stagemesh-signature']);
    const t = Number(/t=(\d+)/.exec(signature)![1]);
    assert.equal(signature, signWebhook('s3cret', first!.body, t));
    assert.equal(JSON.parse(second!.body).type, 'release.shipped');
  });

  it('retries with backoff until the endpoint accepts the event', async () => {
    answer = (n) => (n < 3 ? 503 : 200);
    forwarder = await WebhookForwarder.start({ log, logger, url, secret: 'k', initialBackoffMs: 50 });
    await log.append([lifecycleEvent('release.approved', 'user/ci', 'release/1', {})]);
    await until(() => received.length === 3);
    await sleep(200);
    assert.equal(received.length, 3);
    assert.equal(new Set(received.map((r) => JSON.parse(r.body).id)).size, 1);
  });

  it('writes a dead-letter record after the last try', async () => {
    answer = () => 500;
    forwarder = await WebhookForwarder.start({ log, logger, url, secret: 'k', subjects: ['release.*'], maxAttempts: 3, initialBackoffMs: 20 });
    const [sequence] = await log.append([lifecycleEvent('release.approved', 'user/ci', 'release/1', {})]);
    await until(() => received.length === 3);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 5_000);
    let deadLetter: Record<string, unknown> | undefined;
    for await (const { event } of await log.subscribe({ subjects: [DEAD_LETTER_TYPE], filter: {}, start: { kind: 'sequence', sequence: 1 } }, controller.signal)) {
      deadLetter = event.data;
      break;
    }
    controller.abort();
    assert.deepEqual(deadLetter && { ...deadLetter, eventId: undefined }, { url, eventId: undefined, eventType: 'release.approved', eventSequence: sequence, attempts: 3, lastStatus: 500, lastError: 'HTTP 500' });
  });
});
