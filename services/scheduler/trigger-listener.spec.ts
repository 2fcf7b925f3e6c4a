import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { lifecycleEvent } from '../common/event-publisher.js';
import { callUnary } from '../common/grpc-client.js';
import { createLogger } from '../common/logger.js';
import type { Event } from '../common/proto.js';
import { remoteEventSource } from '../event-bus/event-stream.js';
import { startTestEventBus, type TestEventBus } from '../event-bus/testing.js';
import { TriggerListener, type TriggeredPipeline } from './trigger-listener.js';

describe('TriggerListener', () => {
  let bus: TestEventBus;
  let listener: TriggerListener | undefined;
  beforeEach(async () => (bus = await startTestEventBus()));
  afterEach(async () => {
    await listener?.stop();
    await bus.stop();
  });

  const publish = (type: string, data: Record<string, unknown>, attributes: Record<string, string> = {}) =>
    callUnary(bus.client.publish.bind(bus.client), { event: lifecycleEvent(type, 'user/git', 'repo/checkout', attributes, data) }, { timeoutMs: 5_000 });

  async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check() && Date.now() < deadline) await sleep(20);
    assert.ok(check(), 'condition not met in time');
  }

  it('starts a run of each pipeline whose trigger matches, with inputs from the event', async () => {
    const pipelines: TriggeredPipeline[] = [
      { pipelineRef: 'checkout', triggers: [{ event: 'git.push', match: { repo: 'checkout' } }], inputNames: ['ref'] },
      { pipelineRef: 'billing', triggers: [{ event: 'git.push', match: { repo: 'billing' } }] },
    ];
    const submitted: [string, Record<string, string>, Event][] = [];
    listener = TriggerListener.start({ events: remoteEventSource(bus.client), pipelines: () => pipelines, pipelinesRefreshMs: 0, submit: async (ref, inputs, event) => void submitted.push([ref, inputs, event]), logger: createLogger({ level: 'silent' }) });
    await sleep(200);
    await publish('git.push', { repo: 'checkout', ref: 'v2' });
    await publish('git.tag', { repo: 'checkout', ref: 'v3' });
    await until(() => submitted.length === 1);
    await sleep(200);
    assert.deepEqual(submitted.map(([ref, inputs]) => [ref, inputs]), [['checkout', { ref: 'v2' }]]);
    assert.equal(submitted[0]![2].type, 'git.push');
  });

  it('retries a trigger whose submission failed', async () => {
    let calls = 0;
    listener = TriggerListener.start({
      events: remoteEventSource(bus.client),
      pipelines: () => [{ pipelineRef: 'deploy', triggers: [{ event: 'release.*' }] }],
      submit: async () => {
        calls++;
        if (calls === 1) throw new Error('scheduler busy');
      },
      logger: createLogger({ level: 'silent' }),
      ackTimeout: '200ms',
    });
    await sleep(200);
    await publish('release.approved', {});
    await until(() => calls === 2);
  });

  it('never lets a pipeline trigger itself from its own run events', async () => {
    const submitted: string[] = [];
    listener = TriggerListener.start({ events: remoteEventSource(bus.client), pipelines: () => [{ pipelineRef: 'loop', triggers: [{ event: 'run.finished' }] }], submit: async (ref) => void submitted.push(ref), logger: createLogger({ level: 'silent' }) });
    await sleep(200);
    await publish('run.finished', {}, { pipeline: 'loop' });
    await publish('run.finished', {}, { pipeline: 'other' });
    await until(() => submitted.length === 1);
  });
});
