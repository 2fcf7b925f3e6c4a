import assert from 'node:assert/strict';
import { prometheusValue } from './prometheus-sample.js';
import { flatness, IntervalRecorder, median, runsDue } from './sustained.js';

/** Percentiles come from an HDR histogram with 3 significant digits: within 0.1 % (plus the 0.1 ms rounding). */
function near(actual: number | null, expected: number): void {
  assert.ok(actual !== null && Math.abs(actual - expected) <= expected * 0.001 + 0.05, `${actual} is not within 0.1 % of ${expected}`);
}

describe('sustained load', () => {
  describe('runsDue()', () => {
    it('spaces runs evenly: the first at once, then one every 1/rate seconds', () => {
      assert.equal(runsDue(10, 0, 100), 1);
      assert.equal(runsDue(10, 99, 100), 1);
      assert.equal(runsDue(10, 100, 100), 2);
      assert.equal(runsDue(10, 1_000, 100), 11);
      assert.equal(runsDue(2.5, 1_000, 100), 3);
    });

    it('never exceeds the runs scheduled, and owes nothing before the start', () => {
      assert.equal(runsDue(10, 9_900, 100), 100);
      assert.equal(runsDue(10, 60_000, 100), 100);
      assert.equal(runsDue(10, -5, 100), 0);
    });

    it('has every scheduled run due before the duration ends', () => {
      const rate = 75;
      const durationMs = 60_000;
      const total = Math.round((rate * durationMs) / 1000);
      assert.equal(runsDue(rate, durationMs - 1, total), total);
    });
  });

  describe('median()', () => {
    it('takes the middle value, or the mean of the two middle ones', () => {
      assert.equal(median([3, 1, 2]), 2);
      assert.equal(median([4, 1, 3, 2]), 2.5);
      assert.ok(Number.isNaN(median([])));
    });
  });

  describe('flatness()', () => {
    it('is the largest relative distance from the median, leaving out the first value', () => {
      // After the warm-up value 10: median 100, farthest 90 → 0.1.
      assert.equal(flatness([10, 100, 90, 105, 100]), 0.1);
      assert.equal(flatness([100, 100, 100]), 0);
    });

    it('counts a slowdown above the median as much as one below it', () => {
      assert.equal(flatness([0, 100, 100, 130]), 0.3);
      assert.equal(flatness([0, 100, 100, 70]), 0.3);
    });

    it('leaves out intervals without a value and needs two values', () => {
      assert.equal(flatness([1, 50, null, 55]), 0.048);
      assert.equal(flatness([1, 50]), null);
      assert.equal(flatness([1, 50, null]), null);
    });

    it('has no meaning around a median of zero', () => {
      assert.equal(flatness([5, 0, 0, 0]), null);
    });

    it('can leave out more warm-up values', () => {
      assert.equal(flatness([1, 2, 100, 100], 2), 0);
    });
  });

  describe('prometheusValue()', () => {
    const text = ['# HELP process_resident_memory_bytes Resident memory size in bytes.', '# TYPE process_resident_memory_bytes gauge', 'process_resident_memory_bytes 123456789', 'process_resident_memory_bytes_max{x="1"} 5', 'nodejs_heap{space="old"} 42'].join('\n');

    it('reads a sample by its exact name, with or without labels', () => {
      assert.equal(prometheusValue(text, 'process_resident_memory_bytes'), 123456789);
      assert.equal(prometheusValue(text, 'nodejs_heap'), 42);
    });

    it('is undefined for a missing metric or a value that is not a number', () => {
      assert.equal(prometheusValue(text, 'process_cpu_seconds_total'), undefined);
      assert.equal(prometheusValue('x NaN', 'x'), undefined);
    });
  });

  describe('IntervalRecorder', () => {
    it('sorts finished stages and sampled latencies into intervals by when they were observed and gives stages per second', () => {
      const recorder = new IntervalRecorder(1_000, 3_000);
      recorder.stagesFinished(100, 4);
      recorder.stagesFinished(900, 6);
      for (let i = 0; i < 10; i++) recorder.stageLatency(100 + i, 5);
      recorder.stagesFinished(1_500, 20);
      for (let i = 0; i < 20; i++) recorder.stageLatency(1_500, 7);
      recorder.stagesFinished(3_000, 4); // after the window: not counted
      recorder.stageLatency(3_000, 9); // after the window: totals only
      const intervals = recorder.intervals();
      assert.deepEqual(
        intervals.map((i) => [i.t_s, i.stages_per_sec]),
        [
          [1, 10],
          [2, 20],
          [3, 0],
        ],
      );
      near(intervals[0]!.stage_latency_ms.p50, 5);
      near(intervals[1]!.stage_latency_ms.p99, 7);
      assert.deepEqual(intervals[2]!.stage_latency_ms, { p50: null, p99: null });
      near(recorder.totals().stage_latency_ms.p99, 9);
    });

    it('divides by the real length of a shorter last interval', () => {
      const recorder = new IntervalRecorder(2_000, 3_000);
      recorder.stagesFinished(2_500, 10);
      assert.equal(recorder.count, 2);
      assert.deepEqual(recorder.interval(1).t_s, 3);
      assert.equal(recorder.interval(1).stages_per_sec, 10);
      assert.deepEqual(recorder.interval(1).stage_latency_ms, { p50: null, p99: null });
    });

    it('keeps run latency percentiles and memory per interval', () => {
      const recorder = new IntervalRecorder(1_000, 2_000);
      for (let ms = 1; ms <= 100; ms++) recorder.runFinished(1_200, ms);
      recorder.setRss(1, 512.5);
      recorder.setRss(7, 1); // outside: ignored
      const second = recorder.interval(1);
      near(second.run_latency_ms.p50, 50);
      near(second.run_latency_ms.p99, 99);
      assert.equal(second.rss_mb, 512.5);
      assert.equal(recorder.interval(0).rss_mb, null);
    });
  });
});
