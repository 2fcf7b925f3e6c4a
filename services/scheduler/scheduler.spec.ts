import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createLogger } from '../common/logger.js';
import { PgliteStore } from '../common/pglite-store.js';
import { OutcomeStatus, RunState, SubmitRunRequest, ValidateRequest, type Pipeline, type Task } from '../common/proto.js';
import { readPipelineOrThrow } from '../common/pipeline-document.js';
import { Compliance } from '../compliance/compliance-service.js';
import { RunStore } from './run-store.js';
import { Scheduler } from './scheduler.js';

const chain = (name: string, length: number) =>
  `name: ${name}\nstages:\n${Array.from({ length }, (_, i) => `  - { id: s${i}, framework: noop${i ? `, needs: [s${i - 1}]` : ''} }`).join('\n')}\n`;

describe('Scheduler', () => {
  let store: PgliteStore;
  beforeEach(async () => (store = await PgliteStore.open(`memory://scheduler-${randomUUID()}`)));
  afterEach(async () => store.close());

  it('commits a step queued by a caller the moment its previous commit resolves', async () => {
    const scheduler = new Scheduler({ logger: createLogger({ level: 'silent' }), runs: new RunStore(store), validate: async () => assert.fail(), enqueue: async () => undefined, cancelTasks: async () => undefined });
    try {
      await scheduler.applyOutcomes([]);
      // This step is queued while the commit that answered the first is still winding down.
      const second = scheduler.applyOutcomes([]);
      const late = new Promise((_, reject) => setTimeout(() => reject(new Error('the second step was never committed')), 2_000).unref());
      assert.deepEqual(await Promise.race([second, late]), { applied: 0, ignored: 0 });
    } finally {
      await scheduler.stop();
    }
  });

  it('runs 200 chains to the end when outcomes come back as fast as tasks go out', async function () {
    this.timeout(30_000);
    const logger = createLogger({ level: 'silent' });
    const compliance = new Compliance(logger);
    // A coordinator as the embedded mesh wires it: every task succeeds, and the
    // next batch of outcomes is handed over as soon as the last one was applied.
    const waiting: Task[] = [];
    let reporting = false;
    const report = async () => {
      if (reporting) return;
      reporting = true;
      while (waiting.length > 0) {
        const tasks = waiting.splice(0);
        await scheduler.applyOutcomes(
          tasks.map((t) => ({ attemptId: t.attemptId, runId: t.runId, stageId: t.stageId, status: OutcomeStatus.OUTCOME_STATUS_SUCCEEDED, outputs: {}, nodeId: 'n1', traceparent: '', schedulerId: '', evidence: undefined })),
        );
      }
      reporting = false;
    };
    const scheduler: Scheduler = new Scheduler({
      logger,
      runs: new RunStore(store, { exclusive: true }),
      validate: (pipeline) => compliance.validate(ValidateRequest.fromPartial({ pipeline })),
      enqueue: async (tasks) => {
        waiting.push(...tasks);
        setImmediate(() => void report());
      },
      cancelTasks: async () => undefined,
    });
    try {
      const document = chain('handover', 4);
      const runs = await Promise.all(Array.from({ length: 200 }, () => scheduler.submit(SubmitRunRequest.fromPartial({ document }))));
      assert.equal(runs[0]!.state, RunState.RUN_STATE_RUNNING);
      assert.equal(runs[0]!.stages[0]!.attempts.length, 1, 'the answer shows the first attempt');
      const deadline = Date.now() + 20_000;
      while (runs.some((r) => scheduler.isActive(r.runId)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const stuck = runs.filter((r) => scheduler.isActive(r.runId)).length;
      assert.equal(stuck, 0, `${stuck} of ${runs.length} runs never finished`);
      const stored = await scheduler.getRun(runs[199]!.runId);
      assert.equal(stored.state, RunState.RUN_STATE_SUCCEEDED);
      assert.equal(stored.createdAt?.getTime(), runs[199]!.createdAt?.getTime(), 'SubmitRun and GetRun agree on when the run was made');
    } finally {
      await scheduler.stop();
    }
  });
  it('scores the registered version at registration, so its runs are admitted with a report already made', async () => {
    const logger = createLogger({ level: 'silent' });
    const compliance = new Compliance(logger);
    const scored: Pipeline[] = [];
    const scheduler = new Scheduler({
      logger,
      runs: new RunStore(store, { exclusive: true }),
      validate: async (pipeline) => {
        scored.push(pipeline);
        return compliance.validate({ pipeline, policy: undefined });
      },
      enqueue: async () => undefined,
      cancelTasks: async () => undefined,
    });
    try {
      const registered = await scheduler.register(readPipelineOrThrow({ document: chain('scored', 2) }));
      assert.equal(registered.version, '1');
      assert.deepEqual(scored.map((p) => p.version), ['', '1']);
      await scheduler.submit(SubmitRunRequest.fromPartial({ pipelineRef: 'scored' }));
      assert.deepEqual(scored.at(-1), scored[1]);
    } finally {
      await scheduler.stop();
    }
  });
});
