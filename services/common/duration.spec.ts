import assert from 'node:assert/strict';
import { formatDurationMs, parseDurationMs } from './duration.js';

describe('duration', () => {
  it('parses the units of the pipeline format', () => {
    assert.equal(parseDurationMs('500ms'), 500);
    assert.equal(parseDurationMs('30s'), 30_000);
    assert.equal(parseDurationMs('1.5s'), 1_500);
    assert.equal(parseDurationMs('5m'), 300_000);
    assert.equal(parseDurationMs('1h30m'), 5_400_000);
  });

  it('refuses what is not a duration', () => {
    for (const text of ['', '5', 'soon', '5 s', '-1s', '1d']) assert.equal(parseDurationMs(text), undefined, text);
  });

  it('formats for people', () => {
    assert.equal(formatDurationMs(12.4), '12ms');
    assert.equal(formatDurationMs(1_234), '1.2s');
    assert.equal(formatDurationMs(184_000), '3m4s');
  });
});
