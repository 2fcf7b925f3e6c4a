import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { printEvents } from '../cli/events-command.js';
import { lifecycleEvent } from '../services/common/event-publisher.js';
import { startTestEventBus, type TestEventBus } from '../services/event-bus/testing.js';

describe('event bus - stagemesh events', () => {
  let bus: TestEventBus;
  beforeEach(async () => (bus = await startTestEventBus()));
  afterEach(() => bus.stop());

  it('follows the events of one run and subject pattern as they are published', async () => {
    const lines: string[] = [];
    const controller = new AbortController();
    const following = printEvents(bus.client, { subjects: ['stage.*'], runId: 'r2', follow: true, last: 0, json: false }, (l) => lines.push(l), controller.signal);
    await sleep(200);
    await bus.log.append([
      lifecycleEvent('stage.started', 'stagemesh/scheduler', 'run/r1/stage/a', { run_id: 'r1' }),
      lifecycleEvent('stage.started', 'stagemesh/scheduler', 'run/r2/stage/a', { run_id: 'r2' }),
      lifecycleEvent('run.finished', 'stagemesh/scheduler', 'run/r2', { run_id: 'r2' }),
      lifecycleEvent('stage.succeeded', 'stagemesh/scheduler', 'run/r2/stage/a', { run_id: 'r2' }),
    ]);
    const deadline = Date.now() + 5_000;
    while (lines.length < 2 && Date.now() < deadline) await sleep(20);
    controller.abort();
    await following;
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /#2 {2}stage\.started .*run\/r2\/stage\/a {2}run_id=r2/);
    assert.match(lines[1]!, /stage\.succeeded/);
  });

  it('prints the last stored events as CloudEvents JSON and exits', async () => {
    await bus.log.append([lifecycleEvent('run.submitted', 'stagemesh/scheduler', 'run/r1', { run_id: 'r1' }, { pipeline: 'checkout' }), lifecycleEvent('run.finished', 'stagemesh/scheduler', 'run/r1', { run_id: 'r1' })]);
    const lines: string[] = [];
    const shown = await printEvents(bus.client, { subjects: [], follow: false, last: 20, json: true }, (l) => lines.push(l), new AbortController().signal);
    assert.equal(shown, 2);
    const first = JSON.parse(lines[0]!);
    assert.equal(first.specversion, '1.0');
    assert.equal(first.type, 'run.submitted');
    assert.equal(first.stagemeshrunid, 'r1');
    assert.deepEqual(first.data, { pipeline: 'checkout' });
  });
});
