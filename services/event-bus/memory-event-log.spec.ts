import assert from 'node:assert/strict';
import { lifecycleEvent } from '../common/event-publisher.js';
import { MemoryEventLog } from './memory-event-log.js';

const event = (type: string) => lifecycleEvent(type, 'test', 'run/r1', { run_id: 'r1' });

describe('MemoryEventLog', () => {
  it('drops the oldest events past its size limit', async () => {
    const log = new MemoryEventLog({ maxEvents: 2 });
    await log.append([event('a.a'), event('a.b'), event('a.c')]);
    assert.deepEqual(await log.info('>'), { count: 2, firstSequence: 2, lastSequence: 3, consumers: [] });
  });

  it('drops events older than its age limit', async () => {
    const log = new MemoryEventLog({ maxAgeMs: 1_000 });
    await log.append([{ ...event('a.old'), time: new Date(Date.now() - 5_000) }, event('a.new')]);
    assert.deepEqual(await log.info('>'), { count: 1, firstSequence: 2, lastSequence: 2, consumers: [] });
  });
});
