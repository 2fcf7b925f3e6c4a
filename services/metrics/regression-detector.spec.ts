import assert from 'node:assert/strict';
import pino from 'pino';
import { lifecycleEvent } from '../common/event-publisher.js';
import { Baseline, GroupBy, type Event } from '../common/proto.js';
import { resolveBaseline } from './baseline-store.js';
import { MetricsRecorder } from './metrics-recorder.js';
import { findRegressions, RegressionDetector } from './regression-detector.js';

function finishedStages(recorder: MetricsRecorder, count: number, atMs: number, endToEndMs: number): void {
  for (let i = 0; i < count; i++) {
    const attrs = { run_id: 'r', stage_id: `s${i}`, framework: 'shell', pipeline: 'p' };
    recorder.record({ ...lifecycleEvent('stage.ready', 'stagemesh/test', 's', attrs, { attempt: 1 }), time: new Date(atMs - endToEndMs) });
    recorder.record({ ...lifecycleEvent('stage.succeeded', 'stagemesh/test', 's', attrs, { attempt: 1, duration_ms: 1 }), time: new Date(atMs) });
  }
}

describe('RegressionDetector', () => {
  const logger = pino({ level: 'silent' });

  describe('findRegressions()', () => {
    it('reports throughput below expected × (1 − tolerance) only once the window holds enough samples', () => {
      let nowMs = 5_000_000;
      const recorder = new MetricsRecorder({ now: () => nowMs });
      const baseline = resolveBaseline(Baseline.fromPartial({ name: 'seed', stagesPerSec: 52.2, window: '1m', minSamples: 30 }));
      finishedStages(recorder, 29, nowMs, 5);
      nowMs += 30_000;
      assert.deepEqual(findRegressions(recorder, baseline), [], 'too few samples');
      finishedStages(recorder, 1, nowMs, 5);
      const [regression] = findRegressions(recorder, baseline);
      assert.equal(regression?.metric, 'stages_per_sec');
      assert.equal(regression?.expected, 52.2);
      assert.equal(regression?.observed, 1, '30 stages in 30 s');
      assert.ok(Math.abs(regression!.threshold - 46.98) < 1e-9);
    });

    it('reports p95 latency above expected × (1 + tolerance) for the group it names only', () => {
      const nowMs = 6_000_000;
      const recorder = new MetricsRecorder({ now: () => nowMs });
      finishedStages(recorder, 20, nowMs, 400);
      const inGroup = resolveBaseline(Baseline.fromPartial({ name: 'lat', p95Ms: 100, tolerance: 0.5, window: '1m', groupBy: GroupBy.GROUP_BY_FRAMEWORK, group: 'shell' }));
      const otherGroup = { ...inGroup, group: 'noop' };
      assert.deepEqual(findRegressions(recorder, otherGroup), []);
      const [regression] = findRegressions(recorder, inGroup);
      assert.deepEqual([regression?.metric, regression?.threshold, regression?.group_by, regression?.samples], ['p95_ms', 150, 'framework', 20]);
      // HDR histograms answer within their precision (two significant digits: 1 %).
      assert.ok(regression!.observed >= 400 && regression!.observed <= 404, `observed ${regression!.observed}`);
    });
  });

  describe('check()', () => {
    it('publishes one metrics.regression per baseline and metric per window, and afresh when the baseline is stored again', async () => {
      let nowMs = 7_000_000;
      const recorder = new MetricsRecorder({ now: () => nowMs });
      finishedStages(recorder, 20, nowMs, 400);
      const published: Event[] = [];
      let baseline = { ...resolveBaseline(Baseline.fromPartial({ name: 'lat', p95Ms: 100, window: '1m' })), updatedAt: new Date(1) };
      const detector = new RegressionDetector({ recorder, baselines: async () => [baseline], publish: (e) => published.push(e), logger, now: () => nowMs, intervalMs: 3_600_000 });
      try {
        assert.equal((await detector.check()).length, 1);
        assert.equal((await detector.check()).length, 0, 'same window: no second event');
        nowMs += 30_000;
        finishedStages(recorder, 20, nowMs, 400);
        assert.equal((await detector.check()).length, 0);
        baseline = { ...baseline, updatedAt: new Date(2) };
        assert.equal((await detector.check()).length, 1, 'a stored-again baseline starts afresh');
        nowMs += 61_000;
        finishedStages(recorder, 20, nowMs, 400);
        assert.equal((await detector.check()).length, 1, 'a window later the regression is reported again');
        assert.deepEqual(published.map((e) => [e.type, e.subject, e.attributes.metric]), Array(3).fill(['metrics.regression', 'baseline/lat', 'p95_ms']));
      } finally {
        detector.stop();
      }
    });
  });
});
