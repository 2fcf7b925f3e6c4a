import assert from 'node:assert/strict';
import { lifecycleEvent } from '../common/event-publisher.js';
import { ResourceExhaustedError } from '../common/errors.js';
import type { Event } from '../common/proto.js';
import { MemoryEventLog, type SubscriptionOptions } from './memory-event-log.js';

const event = (type: string, run = 'r1') => lifecycleEvent(type, 'test', `run/${run}`, { run_id: run });

async function take(log: MemoryEventLog, options: SubscriptionOptions, count: number): Promise<Event[]> {
  const controller = new AbortController();
  const seen: Event[] = [];
  for await (const e of log.subscribe(options, controller.signal)) {
    seen.push(e);
    if (seen.length === count) controller.abort();
  }
  return seen;
}

describe('MemoryEventLog', () => {
  it('assigns increasing sequences, ids and times', () => {
    const log = new MemoryEventLog();
    const [a, b] = log.append([event('run.submitted'), event('run.finished')]);
    assert.deepEqual([a, b], [1, 2]);
    assert.deepEqual(log.info('run.*'), { count: 2, firstSequence: 1, lastSequence: 2 });
  });

  it('replays the last N matching events, then streams new ones in order', async () => {
    const log = new MemoryEventLog();
    log.append([event('stage.ready'), event('run.submitted'), event('stage.succeeded')]);
    const pending = take(log, { subjects: ['stage.*'], filter: {}, start: { kind: 'last', count: 1 } }, 2);
    await new Promise((r) => setImmediate(r));
    log.append([event('run.finished'), event('stage.failed')]);
    assert.deepEqual((await pending).map((e) => e.type), ['stage.succeeded', 'stage.failed']);
  });

  it('starts from a sequence or a time, and filters on attributes', async () => {
    const log = new MemoryEventLog();
    log.append([event('stage.ready', 'a'), event('stage.ready', 'b'), event('stage.succeeded', 'b')]);
    const fromSeq = await take(log, { subjects: [], filter: { run_id: 'b' }, start: { kind: 'sequence', sequence: 3 } }, 1);
    assert.deepEqual(fromSeq.map((e) => e.sequence), [3]);
    const fromTime = await take(log, { subjects: [], filter: {}, start: { kind: 'time', time: new Date(0) } }, 3);
    assert.equal(fromTime.length, 3);
  });

  it('tells a subscriber that fell too far behind instead of losing events silently', async () => {
    const log = new MemoryEventLog();
    const controller = new AbortController();
    const iterator = log.subscribe({ subjects: [], filter: {}, start: { kind: 'new' }, maxPending: 2 }, controller.signal);
    const first = iterator.next();
    log.append([event('a.b'), event('a.c'), event('a.d'), event('a.e')]);
    assert.equal((await first).value?.type, 'a.b');
    assert.equal((await iterator.next()).value?.type, 'a.c');
    await assert.rejects(iterator.next(), (err: unknown) => err instanceof ResourceExhaustedError && /2 events were not delivered/.test(err.message));
  });

  it('drops the oldest events past its size limit', () => {
    const log = new MemoryEventLog({ maxEvents: 2 });
    log.append([event('a.a'), event('a.b'), event('a.c')]);
    assert.deepEqual(log.info('>'), { count: 2, firstSequence: 2, lastSequence: 3 });
  });
});
