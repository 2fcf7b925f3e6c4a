import assert from 'node:assert/strict';
import { lifecycleEvent } from '../common/event-publisher.js';
import { GroupBy, type Event } from '../common/proto.js';
import { MetricsRecorder } from './metrics-recorder.js';

/** A recorder on a clock the test moves. */
function recorderAt(startMs: number) {
  let nowMs = startMs;
  const stages: string[] = [];
  const recorder = new MetricsRecorder({ now: () => nowMs, onStage: (s) => stages.push(`${s.framework}:${s.outcome}`) });
  return {
    recorder,
    stages,
    advance: (ms: number) => (nowMs += ms),
    get now() {
      return nowMs;
    },
  };
}

function stageEvent(type: string, atMs: number, fields: { run?: string; stage?: string; framework?: string; pipeline?: string; node?: string; attempt?: number; durationMs?: number } = {}): Event {
  const event = lifecycleEvent(
    type,
    'stagemesh/test',
    'run/r/stage/s',
    { run_id: fields.run ?? 'r', stage_id: fields.stage ?? 's', framework: fields.framework ?? 'shell', pipeline: fields.pipeline ?? 'p' },
    { attempt: fields.attempt ?? 1, node_id: fields.node ?? 'n1', duration_ms: fields.durationMs ?? 0 },
  );
  return { ...event, time: new Date(atMs) };
}

describe('MetricsRecorder', () => {
  describe('record()', () => {
    it('derives queue wait and end-to-end latency from stage.ready and the outcome of the same attempt', () => {
      const clock = recorderAt(1_000_000);
      clock.recorder.record(stageEvent('stage.ready', clock.now));
      clock.advance(250);
      clock.recorder.record(stageEvent('stage.succeeded', clock.now, { durationMs: 200 }));
      const [series] = clock.recorder.query('1m', GroupBy.GROUP_BY_UNSPECIFIED);
      assert.equal(series!.stagesSucceeded, 1);
      assert.equal(series!.execution!.p50Ms, 200);
      assert.equal(series!.endToEnd!.p50Ms, 250);
      assert.equal(series!.queueWait!.p50Ms, 50);
      assert.deepEqual(clock.stages, ['shell:succeeded']);
    });

    it('counts failures, cancellations and retries, and runs only where they have a group', () => {
      const clock = recorderAt(2_000_000);
      for (const type of ['stage.failed', 'stage.retrying', 'stage.succeeded', 'stage.cancelled']) clock.recorder.record(stageEvent(type, clock.now, { stage: type }));
      clock.recorder.record({ ...lifecycleEvent('run.finished', 'stagemesh/test', 'run/r', { run_id: 'r', pipeline: 'p' }, { state: 'FAILED' }), time: new Date(clock.now) });
      const [all] = clock.recorder.query('1m', GroupBy.GROUP_BY_UNSPECIFIED);
      assert.deepEqual([all!.stagesSucceeded, all!.stagesFailed, all!.retries, all!.runsFinished], [1, 1, 1, 1]);
      assert.equal(all!.endToEnd!.count, 0, 'no stage.ready seen: no end-to-end latency');
      assert.deepEqual(clock.recorder.query('1m', GroupBy.GROUP_BY_FRAMEWORK).map((s) => [s.group, s.runsFinished]), [['shell', 0]]);
      assert.deepEqual(clock.recorder.query('1m', GroupBy.GROUP_BY_PIPELINE).map((s) => [s.group, s.runsFinished]), [['p', 1]]);
    });

    it('keeps groups apart per framework, node and pipeline', () => {
      const clock = recorderAt(3_000_000);
      clock.recorder.record(stageEvent('stage.succeeded', clock.now, { framework: 'shell', node: 'a', pipeline: 'x' }));
      clock.recorder.record(stageEvent('stage.succeeded', clock.now, { framework: 'noop', node: 'b', pipeline: 'x' }));
      clock.recorder.record(stageEvent('stage.succeeded', clock.now, { framework: 'noop', node: 'b', pipeline: 'y' }));
      const counts = (groupBy: GroupBy) => clock.recorder.query('1m', groupBy).map((s) => [s.group, s.stagesSucceeded]);
      assert.deepEqual(counts(GroupBy.GROUP_BY_FRAMEWORK), [['noop', 2], ['shell', 1]]);
      assert.deepEqual(counts(GroupBy.GROUP_BY_NODE), [['a', 1], ['b', 2]]);
      assert.deepEqual(counts(GroupBy.GROUP_BY_PIPELINE), [['x', 2], ['y', 1]]);
    });
  });

  describe('query()', () => {
    it('slides each window: a sample leaves 1m after a minute, 5m after five, 1h after an hour', () => {
      const clock = recorderAt(10_000_000);
      clock.recorder.record(stageEvent('stage.succeeded', clock.now, { durationMs: 40 }));
      const count = (window: '1m' | '5m' | '1h') => clock.recorder.query(window, GroupBy.GROUP_BY_UNSPECIFIED)[0]!.stagesSucceeded;
      clock.advance(30_000);
      assert.deepEqual([count('1m'), count('5m'), count('1h')], [1, 1, 1]);
      clock.advance(40_000);
      assert.deepEqual([count('1m'), count('5m'), count('1h')], [0, 1, 1]);
      clock.advance(240_000);
      assert.deepEqual([count('1m'), count('5m'), count('1h')], [0, 0, 1]);
      assert.equal(clock.recorder.query('1h', GroupBy.GROUP_BY_UNSPECIFIED)[0]!.execution!.p50Ms, 40, 'histograms roll up with the counts');
      clock.advance(3_600_000);
      assert.deepEqual([count('1m'), count('5m'), count('1h')], [0, 0, 0]);
    });

    it('rolls up seconds that saw no query for longer than a minute', () => {
      const clock = recorderAt(20_000_000);
      clock.recorder.record(stageEvent('stage.succeeded', clock.now));
      clock.advance(200_000);
      assert.equal(clock.recorder.query('5m', GroupBy.GROUP_BY_UNSPECIFIED)[0]!.stagesSucceeded, 1);
    });

    it('rates throughput over the time the recorder has seen, at most the window', () => {
      const clock = recorderAt(30_000_000);
      for (let i = 0; i < 100; i++) clock.recorder.record(stageEvent('stage.succeeded', clock.now, { stage: `s${i}` }));
      clock.advance(10_000);
      assert.equal(clock.recorder.query('1m', GroupBy.GROUP_BY_UNSPECIFIED)[0]!.stagesPerSec, 10);
      clock.advance(50_000);
      assert.equal(clock.recorder.query('5m', GroupBy.GROUP_BY_UNSPECIFIED)[0]!.stagesPerSec, 100 / 60);
    });

    it('places late events in the coarser windows and drops events older than an hour', () => {
      const clock = recorderAt(40_000_000);
      clock.advance(600_000);
      clock.recorder.record(stageEvent('stage.succeeded', clock.now - 120_000));
      clock.recorder.record(stageEvent('stage.succeeded', clock.now - 7_200_000));
      const count = (window: '1m' | '5m' | '1h') => clock.recorder.query(window, GroupBy.GROUP_BY_UNSPECIFIED)[0]!.stagesSucceeded;
      assert.deepEqual([count('1m'), count('5m'), count('1h')], [0, 1, 1]);
    });

    it('answers one empty series when nothing was recorded and no group was asked', () => {
      const clock = recorderAt(50_000_000);
      assert.deepEqual(clock.recorder.query('1m', GroupBy.GROUP_BY_UNSPECIFIED).map((s) => [s.group, s.stagesSucceeded, s.endToEnd!.count]), [['', 0, 0]]);
      assert.deepEqual(clock.recorder.query('1m', GroupBy.GROUP_BY_FRAMEWORK), []);
    });
  });
});
