import { SamplingDecision, type Sampler, type SamplingResult } from '@opentelemetry/sdk-trace-base';

/**
 * Samples at most `perSecond` new traces a second, whatever the load (a token
 * bucket refilled continuously and holding one second's worth), like Jaeger's
 * "ratelimiting" sampler. Used under a parent-based sampler as the root
 * sampler: a run whose trace is sampled is traced whole, at every hop, and
 * the runs left out cost no tracing at all (see `recording()` in telemetry.ts).
 * A developer's runs, a few a second, are all traced; a mesh running
 * thousands a second traces `perSecond` of them.
 */
export class RateLimitedSampler implements Sampler {
  #credits: number;
  #lastMs: number;

  constructor(
    readonly perSecond: number,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    if (!(perSecond > 0) || !Number.isFinite(perSecond)) throw new RangeError(`traces per second must be a positive number, got ${perSecond}`);
    this.#credits = perSecond;
    this.#lastMs = nowMs();
  }

  shouldSample(): SamplingResult {
    const now = this.nowMs();
    this.#credits = Math.min(this.perSecond, this.#credits + ((now - this.#lastMs) / 1000) * this.perSecond);
    this.#lastMs = now;
    if (this.#credits < 1) return { decision: SamplingDecision.NOT_RECORD };
    this.#credits -= 1;
    return { decision: SamplingDecision.RECORD_AND_SAMPLED };
  }

  toString(): string {
    return `RateLimitedSampler{${this.perSecond}/s}`;
  }
}
