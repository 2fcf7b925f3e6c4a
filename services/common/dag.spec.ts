import assert from 'node:assert/strict';
import { danglingNeeds, dependentsOf, duplicateStageIds, findCycle, nextStep, runStatus, type DagStage, type StageStatus } from './dag.js';

const stage = (id: string, needs: string[] = [], when?: string): DagStage => ({ id, needs, when });
const states = (entries: Record<string, StageStatus>) => new Map(Object.entries(entries));

describe('dag', () => {
  describe('findCycle()', () => {
    it('returns undefined for a diamond', () => {
      assert.equal(findCycle([stage('a'), stage('b', ['a']), stage('c', ['a']), stage('d', ['b', 'c'])]), undefined);
    });

    it('names every stage of a three-stage cycle as a closed path', () => {
      const cycle = findCycle([stage('a', ['c']), stage('b', ['a']), stage('c', ['b'])]);
      assert.deepEqual(cycle, ['a', 'c', 'b', 'a']);
    });

    it('finds a stage that needs itself', () => {
      assert.deepEqual(findCycle([stage('a'), stage('b', ['b'])]), ['b', 'b']);
    });

    it('ignores dangling needs', () => {
      assert.equal(findCycle([stage('a', ['missing'])]), undefined);
    });

    it('handles a 20,000-stage chain without overflowing the stack', () => {
      const chain = Array.from({ length: 20_000 }, (_, i) => stage(`s${i}`, i ? [`s${i - 1}`] : []));
      assert.equal(findCycle(chain), undefined);
      chain[0] = stage('s0', ['s19999']);
      assert.equal(findCycle(chain)?.length, 20_001);
    });
  });

  describe('danglingNeeds() and duplicateStageIds()', () => {
    it('reports where an unknown need stands', () => {
      assert.deepEqual(danglingNeeds([stage('a'), stage('b', ['a', 'nope'])]), [{ index: 1, needIndex: 1, need: 'nope' }]);
    });

    it('reports the second use of an id', () => {
      assert.deepEqual(duplicateStageIds([stage('a'), stage('b'), stage('a')]), [{ index: 2, id: 'a' }]);
    });
  });

  describe('nextStep()', () => {
    const pipeline = [stage('build'), stage('unit', ['build']), stage('lint', ['build']), stage('report', ['unit', 'lint'], 'always'), stage('alert', ['unit'], 'on_failure')];

    it('starts the roots first', () => {
      assert.deepEqual(nextStep(pipeline, states({ build: 'PENDING', unit: 'PENDING', lint: 'PENDING', report: 'PENDING', alert: 'PENDING' })), { start: ['build'], skip: [] });
    });

    it('fans out once a stage succeeds', () => {
      const step = nextStep(pipeline, states({ build: 'SUCCEEDED', unit: 'PENDING', lint: 'PENDING', report: 'PENDING', alert: 'PENDING' }));
      assert.deepEqual(step.start, ['unit', 'lint']);
    });

    it('waits for every need to be terminal', () => {
      const step = nextStep(pipeline, states({ build: 'SUCCEEDED', unit: 'SUCCEEDED', lint: 'RUNNING', report: 'PENDING', alert: 'PENDING' }));
      assert.deepEqual(step, { start: [], skip: ['alert'] });
    });

    it('runs on_failure and always stages after a failure and skips the rest', () => {
      const step = nextStep(pipeline, states({ build: 'SUCCEEDED', unit: 'FAILED', lint: 'SUCCEEDED', report: 'PENDING', alert: 'PENDING' }));
      assert.deepEqual(step, { start: ['report', 'alert'], skip: [] });
    });

    it('cascades skips to dependents of a failed stage', () => {
      const step = nextStep(pipeline, states({ build: 'FAILED', unit: 'PENDING', lint: 'PENDING', report: 'PENDING', alert: 'PENDING' }));
      assert.deepEqual(step, { start: ['report'], skip: ['unit', 'lint', 'alert'] });
    });

    it('from the dependents of the stages that ended, decides what a whole step decides', () => {
      const dependents = dependentsOf(pipeline);
      const byId = new Map(pipeline.map((s) => [s.id, s]));
      const cases: [Record<string, StageStatus>, string][] = [
        [{ build: 'SUCCEEDED', unit: 'PENDING', lint: 'PENDING', report: 'PENDING', alert: 'PENDING' }, 'build'],
        [{ build: 'FAILED', unit: 'PENDING', lint: 'PENDING', report: 'PENDING', alert: 'PENDING' }, 'build'],
        [{ build: 'SUCCEEDED', unit: 'FAILED', lint: 'SUCCEEDED', report: 'PENDING', alert: 'PENDING' }, 'unit'],
      ];
      for (const [given, ended] of cases) {
        const candidates = dependents.get(ended)!;
        assert.deepEqual(nextStep(pipeline, states(given), { candidates, dependents }), nextStep(pipeline, states(given)), `after ${ended} ended in ${JSON.stringify(given)}`);
      }
      // A stage that is not a candidate is not looked at, even if it could start.
      const onlyLint = nextStep(pipeline, states({ build: 'SUCCEEDED', unit: 'PENDING', lint: 'PENDING', report: 'PENDING', alert: 'PENDING' }), { candidates: [byId.get('lint')!], dependents });
      assert.deepEqual(onlyLint, { start: ['lint'], skip: [] });
    });
  });

  describe('runStatus()', () => {
    it('is RUNNING while a stage is not terminal', () => {
      assert.equal(runStatus(['SUCCEEDED', 'QUEUED']), 'RUNNING');
    });

    it('is FAILED when any stage failed, even if an always stage succeeded', () => {
      assert.equal(runStatus(['FAILED', 'SKIPPED', 'SUCCEEDED']), 'FAILED');
    });

    it('is CANCELLED when stages were cancelled and none failed', () => {
      assert.equal(runStatus(['SUCCEEDED', 'CANCELLED']), 'CANCELLED');
    });

    it('is SUCCEEDED when everything succeeded or was skipped', () => {
      assert.equal(runStatus(['SUCCEEDED', 'SKIPPED']), 'SUCCEEDED');
    });
  });
});
