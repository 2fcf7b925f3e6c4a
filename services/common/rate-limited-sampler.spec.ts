import assert from 'node:assert/strict';
import { SamplingDecision } from '@opentelemetry/sdk-trace-base';
import { RateLimitedSampler } from './rate-limited-sampler.js';

describe('RateLimitedSampler', () => {
  it('samples at most its rate, one second of credit at a time', () => {
    let now = 0;
    const sampler = new RateLimitedSampler(10, () => now);
    const sampled = (n: number) => Array.from({ length: n }, () => sampler.shouldSample().decision).filter((d) => d === SamplingDecision.RECORD_AND_SAMPLED).length;
    assert.equal(sampled(100), 10, 'a burst gets the bucket and no more');
    now += 500;
    assert.equal(sampled(100), 5, 'half a second earns half the rate');
    now += 60_000;
    assert.equal(sampled(100), 10, 'a quiet minute earns no more than one second');
    for (let i = 0; i < 10; i++) {
      now += 100;
      assert.equal(sampled(1), 1, 'one trace every tenth of a second is within the rate');
    }
  });

  it('leaves out what it does not sample without recording it', () => {
    const sampler = new RateLimitedSampler(1, () => 0);
    assert.equal(sampler.shouldSample().decision, SamplingDecision.RECORD_AND_SAMPLED);
    assert.equal(sampler.shouldSample().decision, SamplingDecision.NOT_RECORD);
  });

  it('refuses a rate that is not a positive number', () => {
    for (const rate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => new RateLimitedSampler(rate), RangeError);
  });
});
