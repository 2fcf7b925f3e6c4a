import assert from 'node:assert/strict';
import { AttemptControl } from './framework-adapter.js';

describe('AttemptControl', () => {
  it('calls each cancel listener once, and a listener added after the cancellation at once', () => {
    const attempt = new AttemptControl();
    const calls: string[] = [];
    attempt.onCancel(() => calls.push('before'));
    attempt.cancel();
    attempt.cancel();
    attempt.onCancel(() => calls.push('after'));
    assert.deepEqual(calls, ['before', 'after']);
    assert.equal(attempt.cancelled, true);
  });

  it('makes a signal that aborts with the attempt, whether read before or after the cancellation', () => {
    const early = new AttemptControl();
    const signal = early.signal;
    assert.equal(signal.aborted, false);
    early.cancel();
    assert.equal(signal.aborted, true);
    assert.equal(early.signal, signal);

    const late = new AttemptControl();
    late.cancel();
    assert.equal(late.signal.aborted, true);
  });
});
