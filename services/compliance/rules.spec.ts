import assert from 'node:assert/strict';
import { Severity } from '../common/proto.js';
import { validatePipeline } from './rules.js';

const doc = (stages: string) => `name: p\nowner: team\nstages:\n${stages}`;

describe('compliance rules', () => {
  describe('validatePipeline()', () => {
    it('passes a well-formed pipeline with score 1', () => {
      const report = validatePipeline({ document: doc('  - { id: a, framework: noop }\n  - { id: b, framework: noop, needs: [a] }') });
      assert.equal(report.passed, true);
      assert.equal(report.score, 1);
      assert.deepEqual(report.findings, []);
      assert.equal(report.laws.length, 5);
    });

    it('reports a cycle under UCL2-cycle with the stages in it', () => {
      const report = validatePipeline({ document: doc('  - { id: a, framework: noop, needs: [b] }\n  - { id: b, framework: noop, needs: [a] }') });
      const [finding] = report.findings;
      assert.equal(finding?.ruleId, 'UCL2-cycle');
      assert.equal(finding?.severity, Severity.SEVERITY_ERROR);
      assert.match(finding!.message, /a → b → a/);
      assert.equal(report.passed, false);
      assert.equal(report.laws.find((l) => l.id === 'UCL2')?.passed, false);
    });

    it('reports a dangling need with its path and a fix', () => {
      const [finding] = validatePipeline({ document: doc('  - { id: a, framework: noop, needs: [ghost] }') }).findings;
      assert.equal(finding?.ruleId, 'UCL2-dangling-need');
      assert.equal(finding?.fieldPath, 'stages[0].needs[0]');
      assert.equal(finding?.stageId, 'a');
      assert.match(finding!.fix, /ghost/);
    });

    it('reports a duplicate id', () => {
      const [finding] = validatePipeline({ document: doc('  - { id: a, framework: noop }\n  - { id: a, framework: noop }') }).findings;
      assert.equal(finding?.ruleId, 'UCL2-duplicate-id');
      assert.equal(finding?.fieldPath, 'stages[1].id');
    });

    it('reports a missing command under UCL1', () => {
      const report = validatePipeline({ document: doc('  - { id: a, framework: shell, run: {} }') });
      assert.equal(report.findings[0]?.ruleId, 'UCL1-schema');
      assert.equal(report.findings[0]?.fieldPath, 'stages[0].run.command');
      assert.equal(report.laws.find((l) => l.id === 'UCL1')?.passed, false);
    });
  });
});
