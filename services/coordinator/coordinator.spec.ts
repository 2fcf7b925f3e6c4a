import assert from 'node:assert/strict';
import { createLogger } from '../common/logger.js';
import { OutcomeStatus, Task, type Outcome } from '../common/proto.js';
import { Coordinator, type NodeSession } from './coordinator.js';

const session = (nodeId: string, frameworks: string[]): NodeSession => ({ nodeId, frameworks: new Set(frameworks), capacity: 4, credits: 0, draining: false, connectedAt: new Date(), labels: {}, send: () => undefined });

describe('Coordinator (a replica of the distributed profile)', () => {
  it('refuses tasks no worker of its own runs, and hands back the queued tasks of a framework whose last worker left', async () => {
    const reported: Outcome[] = [];
    const coordinator = new Coordinator({ logger: createLogger({ level: 'silent' }), refuseWithoutWorkers: true, instanceId: 'c1', reportOutcomes: async (o) => void reported.push(...o) });
    try {
      coordinator.connect(session('w1', ['noop']));
      const task = (attemptId: string, framework: string) => Task.fromPartial({ attemptId, runId: 'r', stageId: attemptId, framework, schedulerId: 's1' });
      assert.deepEqual(coordinator.enqueue([task('a1', 'noop'), task('a2', 'shell'), task('a3', 'noop')]), { accepted: 2, refused: ['a2'] });
      // The worker has granted no credits: both noop tasks wait in the queue when it leaves.
      coordinator.disconnect('w1', 'gone');
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(
        reported.map((o) => [o.attemptId, o.status, o.schedulerId]),
        [
          ['a1', OutcomeStatus.OUTCOME_STATUS_LOST, 's1'],
          ['a3', OutcomeStatus.OUTCOME_STATUS_LOST, 's1'],
        ],
      );
      assert.match(reported[0]!.evidence!.error, /^lost: no worker for noop/);
      assert.deepEqual(coordinator.enqueue([task('a4', 'noop')]), { accepted: 0, refused: ['a4'] });
    } finally {
      await coordinator.stop();
    }
  });

  it('counts the outcomes a node sends after its lease expired, per node', async () => {
    const coordinator = new Coordinator({ logger: createLogger({ level: 'silent' }), reportOutcomes: async () => undefined });
    try {
      coordinator.connect(session('w1', ['noop']));
      coordinator.receiveOutcomes('w1', [{ attemptId: 'never-leased', runId: 'r', stageId: 's', status: OutcomeStatus.OUTCOME_STATUS_SUCCEEDED, outputs: {}, nodeId: 'w1', traceparent: '', schedulerId: '', evidence: undefined }]);
      assert.equal(coordinator.nodes()[0]!.refusedOutcomes, 1);
      assert.equal(coordinator.duplicateOutcomes, 1);
    } finally {
      await coordinator.stop();
    }
  });
});
