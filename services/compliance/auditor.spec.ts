import assert from 'node:assert/strict';
import { createLogger } from '../common/logger.js';
import { readPipelineOrThrow } from '../common/pipeline-document.js';
import { RunState, StageState, type Event, type Run, type StageRun } from '../common/proto.js';
import { AuditLog } from './audit-log.js';
import { auditRun, createAuditor, mayHaveFindings } from './auditor.js';

const pipeline = readPipelineOrThrow({
  document: `name: audited
defaults: { timeout: 1s }
stages:
  - { id: build, framework: shell, run: { command: make }, outputs: [version], artifacts: [dist/app.tgz] }
  - { id: unit, framework: node-test, needs: [build], run: { files: [t.js] } }
  - { id: slow, framework: shell, timeout: 2s, run: { command: sleep 9 } }`,
});

const stageRun = (stageId: string, state: StageState, durationMs: number, extra: Partial<StageRun> = {}): StageRun => ({
  stageId,
  framework: '',
  state,
  needs: [],
  outputs: {},
  attempts: [{ attemptId: `${stageId}-1`, number: 1, nodeId: 'n', state, startedAt: undefined, finishedAt: undefined, evidence: { exitCode: 0, durationMs, logTail: '', tests: undefined, httpStatus: 0, error: '', artifacts: [] } }],
  ...extra,
});

const run = (stages: StageRun[]): Run => ({ runId: 'r1', pipelineName: 'audited', pipelineVersion: 'inline', state: RunState.RUN_STATE_SUCCEEDED, inputs: {}, stages, createdAt: undefined, finishedAt: undefined, idempotencyKey: '', priority: 0, labels: {}, reason: '' });

describe('auditRun()', () => {
  it('finds declared evidence a stage did not produce and attempts that ran past their timeout', () => {
    const findings = auditRun(
      run([stageRun('build', StageState.STAGE_STATE_SUCCEEDED, 200), stageRun('unit', StageState.STAGE_STATE_SUCCEEDED, 300), stageRun('slow', StageState.STAGE_STATE_FAILED, 9_000)]),
      pipeline,
    );
    assert.deepEqual(findings.map((f) => `${f.ruleId} ${f.stageId} ${f.fieldPath}`).sort(), [
      'UCL1-audit-missing-artifact build stages[0].artifacts',
      'UCL1-audit-missing-output build stages[0].outputs',
      'UCL1-audit-missing-report unit stages[1].run',
      'UCL4-audit-timeout-exceeded slow stages[2].timeout',
    ]);
    assert.ok(findings.every((f) => f.runId === 'r1'));
  });

  it('audits a matrix expansion against the stage it comes from', () => {
    const findings = auditRun(run([stageRun('build[linux]', StageState.STAGE_STATE_SUCCEEDED, 5_000)]), pipeline);
    assert.ok(findings.some((f) => f.ruleId === 'UCL4-audit-timeout-exceeded' && f.stageId === 'build[linux]' && f.fieldPath === 'stages[0].timeout'));
  });

  it('finds nothing in a run that kept its promises', () => {
    const build = stageRun('build', StageState.STAGE_STATE_SUCCEEDED, 200, { outputs: { version: '1' } });
    build.attempts[0]!.evidence!.artifacts = [{ path: 'dist/app.tgz', sizeBytes: 10 }];
    const unit = stageRun('unit', StageState.STAGE_STATE_SUCCEEDED, 300);
    unit.attempts[0]!.evidence!.tests = { total: 3, passed: 3, failed: 0, skipped: 0, failures: [] };
    assert.deepEqual(auditRun(run([build, unit]), pipeline), []);
  });
});

describe('createAuditor()', () => {
  it('audits a run when run.finished arrives, records the findings and publishes compliance.violation', async () => {
    const log = new AuditLog();
    const published: Event[] = [];
    const asked: string[][] = [];
    const auditor = createAuditor({
      getRuns: async (ids) => {
        asked.push(ids);
        return [{ run: run([stageRun('build', StageState.STAGE_STATE_SUCCEEDED, 10, { outputs: { version: '1' } })]), pipeline }];
      },
      log,
      publish: (events) => published.push(...events),
      logger: createLogger({ level: 'silent' }),
    });
    const event = (type: string): Event => ({ id: '', sequence: 1, type, source: '', subject: '', time: undefined, datacontenttype: '', data: {}, attributes: { run_id: 'r1' }, headers: {}, key: '' });
    auditor.onEvent(event('stage.succeeded'));
    auditor.onEvent(event('run.finished'));
    await auditor.settled();
    assert.deepEqual(log.findings('r1').map((f) => f.ruleId), ['UCL1-audit-missing-artifact']);
    assert.equal(published[0]?.type, 'compliance.violation');
    assert.equal(published[0]?.attributes.run_id, 'r1');
    assert.deepEqual(asked, [['r1']]);
  });

  it('fetches runs that finish together in one call', async () => {
    const asked: string[][] = [];
    const log = new AuditLog();
    const auditor = createAuditor({
      getRuns: async (ids) => {
        asked.push(ids);
        return ids.filter((id) => id !== 'gone').map((id) => ({ run: { ...run([stageRun('build', StageState.STAGE_STATE_SUCCEEDED, 10, { outputs: { version: '1' } })]), runId: id }, pipeline }));
      },
      log,
      logger: createLogger({ level: 'silent' }),
    });
    for (const id of ['a', 'b', 'gone']) auditor.onEvent({ id: '', sequence: 1, type: 'run.finished', source: '', subject: '', time: undefined, datacontenttype: '', data: {}, attributes: { run_id: id }, headers: {}, key: '' });
    await auditor.settled();
    assert.deepEqual(asked, [['a', 'b', 'gone']]);
    assert.equal(log.findings('a').length, 1);
    assert.equal(log.findings('b').length, 1);
    assert.deepEqual(log.findings('gone'), []);
  });

  it('reads only the runs whose pipeline may have findings when it can ask for pipelines first', async () => {
    const plain = readPipelineOrThrow({ document: 'name: plain\nstages:\n  - { id: a, framework: noop }\n  - { id: b, framework: shell, needs: [a], run: { command: "true" } }' });
    assert.equal(mayHaveFindings(plain), false);
    assert.equal(mayHaveFindings(pipeline), true);
    assert.equal(mayHaveFindings(readPipelineOrThrow({ document: 'name: timed\nstages:\n  - { id: a, framework: noop, timeout: 5s }' })), true);
    const asked: string[][] = [];
    const log = new AuditLog();
    const auditor = createAuditor({
      pipelinesOf: async (ids) => new Map(ids.map((id) => [id, id === 'plain' ? plain : pipeline])),
      getRuns: async (ids) => {
        asked.push(ids);
        return ids.map((id) => ({ run: { ...run([stageRun('build', StageState.STAGE_STATE_SUCCEEDED, 10)]), runId: id }, pipeline }));
      },
      log,
      logger: createLogger({ level: 'silent' }),
    });
    for (const id of ['plain', 'declared']) auditor.onEvent({ id: '', sequence: 1, type: 'run.finished', source: '', subject: '', time: undefined, datacontenttype: '', data: {}, attributes: { run_id: id }, headers: {}, key: '' });
    await auditor.settled();
    assert.deepEqual(asked, [['declared']]);
    assert.deepEqual(log.findings('plain'), []);
    assert.ok(log.findings('declared').length > 0);
  });

  it('logs and survives a run it cannot fetch', async () => {
    const auditor = createAuditor({ getRuns: async () => Promise.reject(new Error('gone')), log: new AuditLog(), logger: createLogger({ level: 'silent' }) });
    auditor.onEvent({ id: '', sequence: 1, type: 'run.finished', source: '', subject: '', time: undefined, datacontenttype: '', data: {}, attributes: { run_id: 'x' }, headers: {}, key: '' });
    await auditor.settled();
  });
});

describe('AuditLog', () => {
  it('keeps the findings of the most recent runs only', () => {
    const log = new AuditLog(2);
    for (const id of ['a', 'b', 'c']) log.record(id, [{ ruleId: 'X', severity: 3, stageId: '', fieldPath: 'p', message: '', fix: '', runId: id }]);
    assert.deepEqual(log.findings('a'), []);
    assert.equal(log.findings('c').length, 1);
  });
});
