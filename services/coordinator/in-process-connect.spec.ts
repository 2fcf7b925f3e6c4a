import assert from 'node:assert/strict';
import { createLogger } from '../common/logger.js';
import { OutcomeStatus, Task, type Outcome } from '../common/proto.js';
import { SleepAdapter } from '../worker/adapters/sleep-adapter.js';
import { Worker } from '../worker/worker.js';
import { Coordinator } from './coordinator.js';
import { connectInProcess } from './in-process-connect.js';

const logger = createLogger({ level: 'silent' });

describe('connectInProcess', () => {
  let coordinator: Coordinator;
  let reported: Outcome[];
  let onReport: () => void;

  beforeEach(() => {
    reported = [];
    onReport = () => undefined;
    coordinator = new Coordinator({
      logger,
      reportOutcomes: async (outcomes) => {
        reported.push(...outcomes);
        onReport();
      },
    });
  });

  afterEach(() => coordinator.stop());

  it('joins a worker as a node that runs tasks and reports outcomes, and leaves when the worker stops', async () => {
    const worker = await Worker.start({ address: 'unused:1', connect: () => connectInProcess(coordinator), logger, nodeId: 'local', capacity: 2, adapters: [new SleepAdapter('noop')] });
    try {
      while (coordinator.nodes().length === 0 || worker.state !== 'running') await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(coordinator.nodes().map((n) => [n.nodeId, n.capacity, n.frameworks]), [['local', 2, ['noop']]]);
      const done = new Promise<void>((resolve) => (onReport = () => reported.length === 3 && resolve()));
      coordinator.enqueue([1, 2, 3].map((i) => Task.fromPartial({ attemptId: `a${i}`, runId: 'r', stageId: `s${i}`, framework: 'noop' })));
      await done;
      assert.deepEqual(reported.map((o) => [o.attemptId, o.status, o.nodeId]).sort(), [1, 2, 3].map((i) => [`a${i}`, OutcomeStatus.OUTCOME_STATUS_SUCCEEDED, 'local']));
    } finally {
      await worker.stop();
    }
    assert.deepEqual(coordinator.nodes(), []);
  });

  it('ends a stream whose hello the coordinator refuses with an error, then status and close', async () => {
    const stream = connectInProcess(coordinator);
    const seen: string[] = [];
    let error: Error | undefined;
    stream.on('error', (err) => {
      error = err;
      seen.push('error');
    });
    stream.once('status', () => seen.push('status'));
    const closed = new Promise<void>((resolve) => stream.on('close', resolve));
    stream.write({ hello: { nodeId: 'bad', frameworks: ['noop'], capacity: 0, labels: {} } });
    await closed;
    seen.push('close');
    assert.deepEqual(seen, ['error', 'status', 'close']);
    assert.match(error!.message, /capacity must be between 1 and/);
    assert.deepEqual(coordinator.nodes(), []);
  });
});
