import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { lifecycleEvent } from '../../services/common/event-publisher.js';
import { FailedPreconditionError, ResourceExhaustedError } from '../../services/common/errors.js';
import type { Event } from '../../services/common/proto.js';
import type { Delivery, EventLog, SubscriptionOptions } from '../../services/event-bus/event-log.js';

/** A backend under test: how to open it, and how to remove what the test created. */
export interface EventLogHarness {
  /** Opens the backend. Called again after close(), it is a restart over the same store. */
  open(): Promise<EventLog>;
  /** Deletes what this test created (its stream, its consumers); never anything else. */
  cleanup(): Promise<void>;
}

/** What a backend promises beyond the common behaviour. */
export interface EventLogTraits {
  /** True when events and durable consumers survive a restart (JetStream). */
  survivesRestart: boolean;
}

/** Longest any conformance test waits for one delivery. */
const WAIT_MS = 5_000;

const event = (type: string, attributes: Record<string, string> = {}, key = '', data: Record<string, unknown> = {}): Event =>
  lifecycleEvent(type, 'stagemesh/test', `test/${type}`, attributes, data, key);

const live = (subjects: string[] = [], extra: Partial<SubscriptionOptions> = {}): SubscriptionOptions => ({ subjects, filter: {}, start: { kind: 'new' }, ...extra });

/** Reads `count` deliveries, or fails after `timeoutMs`. */
async function take(log: EventLog, options: SubscriptionOptions, count: number, timeoutMs = WAIT_MS): Promise<Delivery[]> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const seen: Delivery[] = [];
  try {
    for await (const d of await log.subscribe(options, controller.signal)) {
      seen.push(d);
      if (seen.length >= count) break;
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  if (seen.length < count) assert.fail(`expected ${count} deliveries within ${timeoutMs} ms, got ${seen.length}`);
  return seen;
}

/** An open subscription read one delivery at a time, with a per-read deadline. */
class Reader {
  readonly controller = new AbortController();
  #iterator!: AsyncIterator<Delivery>;

  static async open(log: EventLog, options: SubscriptionOptions): Promise<Reader> {
    const reader = new Reader();
    reader.#iterator = (await log.subscribe(options, reader.controller.signal))[Symbol.asyncIterator]();
    return reader;
  }

  async next(timeoutMs = WAIT_MS): Promise<Delivery> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no delivery within ${timeoutMs} ms`)), timeoutMs)));
    try {
      const result = await Promise.race([this.#iterator.next(), deadline]);
      if (result.done) throw new Error('subscription ended');
      return result.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** True when nothing arrives within `ms`. */
  async quietFor(ms: number): Promise<boolean> {
    try {
      await this.next(ms);
      return false;
    } catch (err) {
      if (/no delivery within/.test((err as Error).message)) return true;
      throw err;
    }
  }

  async close(): Promise<void> {
    this.controller.abort();
    await Promise.race([this.#iterator.return?.(), sleep(1_000)]);
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/**
 * The behaviour every event-log backend must show, as one mocha suite.
 * Each test gets a fresh harness (its own stream or log) and cleans it up.
 */
export function describeEventLogConformance(name: string, createHarness: () => Promise<EventLogHarness>, traits: EventLogTraits): void {
  describe(`EventLog conformance: ${name}`, function () {
    this.timeout(30_000);
    let harness: EventLogHarness;
    let log: EventLog;
    const readers: Reader[] = [];
    const open = async (options: SubscriptionOptions) => {
      const reader = await Reader.open(log, options);
      readers.push(reader);
      return reader;
    };

    beforeEach(async () => {
      harness = await createHarness();
      log = await harness.open();
    });

    afterEach(async () => {
      await Promise.allSettled(readers.splice(0).map((r) => r.close()));
      await log.close();
      await harness.cleanup();
    });

    it('assigns increasing sequences and fills the CloudEvents attributes', async () => {
      const sequences = await log.append([event('run.submitted'), event('run.finished')]);
      assert.equal(sequences.length, 2);
      assert.ok(sequences[1]! > sequences[0]!);
      const [first] = await take(log, live([], { start: { kind: 'sequence', sequence: sequences[0]! } }), 1);
      assert.equal(first!.event.sequence, sequences[0]);
      assert.match(first!.event.id, /\S/);
      assert.ok(first!.event.time instanceof Date);
      assert.equal(first!.event.datacontenttype, 'application/json');
      assert.equal(first!.event.source, 'stagemesh/test');
    });

    it('keeps headers such as traceparent, attributes and data intact end to end', async () => {
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const reader = await open(live(['release.approved']));
      await log.append([{ ...event('release.approved', { run_id: 'r1' }, 'k', { version: '1.2.3', n: 3 }), headers: { traceparent, tracestate: 'a=b' } }]);
      const { event: got } = await reader.next();
      assert.deepEqual(got.headers, { traceparent, tracestate: 'a=b' });
      assert.deepEqual(got.attributes, { run_id: 'r1' });
      assert.deepEqual(got.data, { version: '1.2.3', n: 3 });
      assert.equal(got.key, 'k');
    });

    it('delivers only the subjects a subscriber asked for, with * and > patterns', async () => {
      const stage = await open(live(['stage.*']));
      const run = await open(live(['run.>']));
      const both = await open(live(['node.lost', 'run.finished']));
      await log.append([event('stage.ready'), event('run.finished'), event('stage.a.b'), event('run.a.b'), event('node.lost'), event('node.joined')]);
      assert.equal((await stage.next()).event.type, 'stage.ready');
      assert.equal(await stage.quietFor(200), true);
      assert.deepEqual([(await run.next()).event.type, (await run.next()).event.type], ['run.finished', 'run.a.b']);
      assert.deepEqual([(await both.next()).event.type, (await both.next()).event.type], ['run.finished', 'node.lost']);
    });

    it('filters on attributes such as the run id', async () => {
      const reader = await open(live(['stage.*'], { filter: { run_id: 'b' } }));
      await log.append([event('stage.ready', { run_id: 'a' }), event('stage.ready', { run_id: 'b' }), event('stage.succeeded', { run_id: 'b' })]);
      assert.deepEqual([(await reader.next()).event.type, (await reader.next()).event.type], ['stage.ready', 'stage.succeeded']);
    });

    it('starts from a sequence, from a time, from the last N, or with new events only', async () => {
      const [s1, s2, s3] = await log.append([event('a.x'), event('a.y'), event('a.z')]);
      await sleep(20);
      const since = new Date();
      await sleep(20);
      const [s4] = await log.append([event('a.w')]);
      assert.deepEqual((await take(log, live(['a.*'], { start: { kind: 'sequence', sequence: s2! } }), 3)).map((d) => d.event.sequence), [s2, s3, s4]);
      assert.deepEqual((await take(log, live(['a.*'], { start: { kind: 'time', time: since } }), 1)).map((d) => d.event.sequence), [s4]);
      assert.deepEqual((await take(log, live(['a.*'], { start: { kind: 'last', count: 2 } }), 2)).map((d) => d.event.sequence), [s3, s4]);
      const fresh = await open(live(['a.*']));
      const [s5] = await log.append([event('a.v')]);
      assert.equal((await fresh.next()).event.sequence, s5);
      assert.ok(s1! < s5!);
    });

    it('delivers the events of each key in publish order', async () => {
      const reader = await open(live(['order.*']));
      const batch: Event[] = [];
      for (let i = 0; i < 300; i++) batch.push(event('order.step', {}, `k${i % 7}`, { i }));
      for (let i = 0; i < batch.length; i += 50) await log.append(batch.slice(i, i + 50));
      const lastByKey = new Map<string, number>();
      for (let i = 0; i < batch.length; i++) {
        const { event: got } = await reader.next();
        const n = Number((got.data as { i: number }).i);
        assert.ok(n > (lastByKey.get(got.key) ?? -1), `key ${got.key}: ${n} after ${lastByKey.get(got.key)}`);
        lastByKey.set(got.key, n);
      }
    });

    it('tells a subscriber that fell behind how far, instead of losing events silently', async () => {
      const slow = await open(live(['burst.*'], { maxPending: 5 }));
      const fast = await open(live(['burst.*']));
      await log.append(Array.from({ length: 50 }, (_, i) => event('burst.tick', {}, '', { i })));
      for (let i = 0; i < 50; i++) assert.equal((await fast.next()).event.type, 'burst.tick');
      await sleep(100);
      let delivered = 0;
      const failure = await (async () => {
        try {
          for (;;) {
            await slow.next();
            delivered++;
          }
        } catch (err) {
          return err;
        }
      })();
      assert.ok(failure instanceof ResourceExhaustedError, `expected ResourceExhaustedError, got ${String(failure)}`);
      assert.match(failure.message, /fell behind by more than 5 events; \d+ events were not delivered/);
      assert.ok(delivered <= 5, `delivered ${delivered}`);
    });

    it('keeps publishers and other subscribers at their latency while one subscriber stalls', async () => {
      const measure = async (withStalled: boolean) => {
        if (withStalled) await open(live(['lat.*'], { maxPending: 100_000 }));
        const reader = await open(live(['lat.*']));
        const publishMs: number[] = [];
        const deliverMs: number[] = [];
        for (let i = 0; i < 200; i++) {
          const started = performance.now();
          await log.append([event('lat.tick', {}, '', { i })]);
          publishMs.push(performance.now() - started);
          await reader.next();
          deliverMs.push(performance.now() - started);
          if (i % 20 === 0) await sleep(1);
        }
        await reader.close();
        return { publish: percentile(publishMs, 99), deliver: percentile(deliverMs, 99) };
      };
      const alone = await measure(false);
      const stalled = await measure(true);
      // The stalled subscriber never reads; its buffer grows but nobody waits on it.
      assert.ok(stalled.publish <= Math.max(3 * alone.publish, alone.publish + 10), `publish p99 ${stalled.publish.toFixed(2)} ms vs ${alone.publish.toFixed(2)} ms alone`);
      assert.ok(stalled.deliver <= Math.max(3 * alone.deliver, alone.deliver + 10), `deliver p99 ${stalled.deliver.toFixed(2)} ms vs ${alone.deliver.toFixed(2)} ms alone`);
    });

    describe('durable consumers', () => {
      it('resumes after the last acknowledged event when a subscriber reconnects', async () => {
        const options = live(['job.*'], { start: { kind: 'new' }, consumer: { name: 'resume', ackTimeoutMs: 10_000 } });
        const first = await open(options);
        const sequences = await log.append([event('job.a'), event('job.b'), event('job.c')]);
        const a = await first.next();
        assert.equal(await log.ack('resume', [a.event.sequence]), 1);
        await first.close();
        const second = await open(options);
        assert.deepEqual([(await second.next()).event.sequence, (await second.next()).event.sequence], sequences.slice(1));
      });

      it('redelivers an unacknowledged event after the ack timeout, up to max deliver', async () => {
        const reader = await open(live(['retry.*'], { consumer: { name: 'retry', ackTimeoutMs: 300, maxDeliver: 2 } }));
        const [sequence] = await log.append([event('retry.me')]);
        const first = await reader.next();
        assert.deepEqual([first.event.sequence, first.delivery], [sequence, 1]);
        const again = await reader.next(3_000);
        assert.deepEqual([again.event.sequence, again.delivery], [sequence, 2]);
        assert.equal(await reader.quietFor(1_000), true, 'no third delivery past max deliver');
      });

      it('does not redeliver what was acknowledged', async () => {
        const reader = await open(live(['done.*'], { consumer: { name: 'done', ackTimeoutMs: 300 } }));
        await log.append([event('done.x')]);
        const d = await reader.next();
        assert.equal(await log.ack('done', [d.event.sequence]), 1);
        assert.equal(await reader.quietFor(800), true);
      });

      it('reports counts, sequence bounds and each consumer with its lag', async () => {
        const reader = await open(live(['info.*'], { consumer: { name: 'info-reader', ackTimeoutMs: 10_000 } }));
        const sequences = await log.append([event('info.a'), event('other.a'), event('info.b'), event('info.c')]);
        const got = await reader.next();
        await log.ack('info-reader', [got.event.sequence]);
        const deadline = Date.now() + WAIT_MS;
        let info = await log.info('info.*');
        while (info.consumers[0]?.lag !== 2 && Date.now() < deadline) {
          await sleep(50);
          info = await log.info('info.*');
        }
        assert.equal(info.count, 3);
        assert.equal(info.firstSequence, sequences[0]);
        assert.equal(info.lastSequence, sequences[3]);
        // The ack floor passes events the consumer does not read (other.a), as in JetStream.
        assert.deepEqual(info.consumers.map((c) => [c.name, c.acknowledgedSequence, c.lag]), [['info-reader', sequences[1], 2]]);
        assert.deepEqual((await log.info('>')).count, 4);
        assert.deepEqual((await log.info('nothing.*')).count, 0);
      });

      it('refuses to reuse a consumer name for other subjects', async () => {
        await open(live(['x.*'], { consumer: { name: 'taken' } }));
        await assert.rejects(log.subscribe(live(['y.*'], { consumer: { name: 'taken' } }), new AbortController().signal), FailedPreconditionError);
      });

      // Registered only for backends whose log survives a restart (the in-process
      // log does not, by design), so no backend ever skips it.
      const itWhenDurable = traits.survivesRestart ? it : (() => undefined as unknown as Mocha.Test);
      itWhenDurable('loses no event and breaks no per-key order when the event bus restarts under a consumer', async function () {
        const options = live(['restart.*'], { start: { kind: 'sequence', sequence: 1 }, consumer: { name: 'survivor', ackTimeoutMs: 1_000 } });
        const published: number[] = [];
        const append = async (from: number, to: number) => {
          for (let i = from; i < to; i += 20) {
            const batch = Array.from({ length: Math.min(20, to - i) }, (_, j) => event('restart.step', {}, `k${(i + j) % 5}`, { i: i + j }));
            published.push(...(await log.append(batch)));
          }
        };
        await append(0, 100);
        const seen = new Map<number, number>();
        const lastByKey = new Map<string, number>();
        const record = async (d: Delivery) => {
          const n = Number((d.event.data as { i: number }).i);
          if (!seen.has(d.event.sequence)) {
            assert.ok(n > (lastByKey.get(d.event.key) ?? -1), `key ${d.event.key}: ${n} after ${lastByKey.get(d.event.key)}`);
            lastByKey.set(d.event.key, n);
          }
          seen.set(d.event.sequence, n);
          await log.ack('survivor', [d.event.sequence]);
        };
        const before = await Reader.open(log, options);
        for (let i = 0; i < 40; i++) await record(await before.next());
        // The restart: the subscription and the backend's connection go away; the stream and consumer stay.
        await before.close();
        await log.close();
        log = await harness.open();
        await append(100, 160);
        const after = await open(options);
        while (seen.size < published.length) await record(await after.next());
        assert.deepEqual([...seen.keys()].sort((a, b) => a - b), published);
      });
    });
  });
}
