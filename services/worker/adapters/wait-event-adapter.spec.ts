import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { lifecycleEvent } from '../../common/event-publisher.js';
import { callUnary } from '../../common/grpc-client.js';
import { OutcomeStatus, Task } from '../../common/proto.js';
import { startTestEventBus, type TestEventBus } from '../../event-bus/testing.js';
import { AttemptControl } from './framework-adapter.js';
import { WaitEventAdapter } from './wait-event-adapter.js';

const task = (run: Record<string, unknown>, fields: Partial<Task> = {}): Task => Task.fromPartial({ attemptId: 'a1', runId: 'r1', stageId: 'approval', framework: 'wait-event', run, timeoutMs: 5_000, ...fields });

describe('WaitEventAdapter', () => {
  let bus: TestEventBus;
  beforeEach(async () => (bus = await startTestEventBus()));
  afterEach(() => bus.stop());

  const publish = (type: string, data: Record<string, unknown>, attributes: Record<string, string> = {}) =>
    callUnary(bus.client.publish.bind(bus.client), { event: lifecycleEvent(type, 'user/test', 'release/1', attributes, data) }, { timeoutMs: 5_000 });

  it('completes when a matching event is published through the API, with its data as outputs', async () => {
    const adapter = new WaitEventAdapter(bus.client);
    const pending = adapter.run(task({ event: 'release.approved', match: { version: '1.2.3', team: 'payments' } }, { outputs: ['approver'] }), new AttemptControl());
    await sleep(100);
    await publish('release.approved', { version: '1.2.2', approver: 'bob' }, { team: 'payments' });
    await publish('release.rejected', { version: '1.2.3' }, { team: 'payments' });
    const { sequence } = await publish('release.approved', { version: '1.2.3', approver: 'alice' }, { team: 'payments' });
    const result = await pending;
    assert.equal(result.status, OutcomeStatus.OUTCOME_STATUS_SUCCEEDED);
    assert.equal(result.outputs.approver, 'alice');
    assert.equal(result.outputs.event_sequence, String(sequence));
  });

  it('sees an event published while it was still subscribing', async () => {
    const adapter = new WaitEventAdapter(bus.client);
    const pending = adapter.run(task({ event: 'build.done', match: { 'artifact.name': 'app' } }), new AttemptControl());
    await publish('build.done', { artifact: { name: 'app' } });
    assert.equal((await pending).status, OutcomeStatus.OUTCOME_STATUS_SUCCEEDED);
  });

  it('times out after the stage timeout when nothing matches', async () => {
    const result = await new WaitEventAdapter(bus.client).run(task({ event: 'never.happens' }, { timeoutMs: 300 }), new AttemptControl());
    assert.equal(result.status, OutcomeStatus.OUTCOME_STATUS_TIMED_OUT);
  });

  it('stops at once when the attempt is cancelled', async () => {
    const attempt = new AttemptControl();
    const pending = new WaitEventAdapter(bus.client).run(task({ event: 'never.happens' }), attempt);
    await sleep(100);
    const cancelledAt = Date.now();
    attempt.cancel();
    assert.equal((await pending).status, OutcomeStatus.OUTCOME_STATUS_CANCELLED);
    assert.ok(Date.now() - cancelledAt < 1_000);
  });

  it('fails a stage that names no event', async () => {
    const result = await new WaitEventAdapter(bus.client).run(task({}), new AttemptControl());
    assert.equal(result.status, OutcomeStatus.OUTCOME_STATUS_FAILED);
    assert.match(result.evidence!.error, /run.event is required/);
  });
});
