import assert from 'node:assert/strict';
import { CliError, ExitCode } from './cli-error.js';
import { sustainedOptionsOf } from './bench-command.js';
import { main } from './main.js';

/** Asserts that the flags are refused as a usage error whose message names `flag`. */
function refused(flags: Parameters<typeof sustainedOptionsOf>[0], flag: string, address?: string): void {
  assert.throws(
    () => sustainedOptionsOf(flags, address),
    (err: unknown) => err instanceof CliError && err.exitCode === ExitCode.USAGE && err.message.includes(flag),
  );
}

describe('bench command', () => {
  describe('sustainedOptionsOf()', () => {
    it('leaves the standard workloads alone without --duration', () => {
      assert.equal(sustainedOptionsOf({}, undefined), undefined);
      assert.equal(sustainedOptionsOf({ only: 'chain' }, '127.0.0.1:1'), undefined);
    });

    it('reads a duration, a rate in stages per second and an interval', () => {
      assert.deepEqual(sustainedOptionsOf({ duration: '60s', rate: '320.5', interval: '10s' }, undefined), { address: undefined, durationMs: 60_000, intervalMs: 10_000, rate: 320.5, metricsUrl: undefined });
    });

    it('measures the rate first when it is auto or absent, with 5 s intervals', () => {
      assert.deepEqual(sustainedOptionsOf({ duration: '1m' }, undefined), { address: undefined, durationMs: 60_000, intervalMs: 5_000, rate: 'auto', metricsUrl: undefined });
      assert.equal(sustainedOptionsOf({ duration: '1m', rate: 'auto' }, undefined)?.rate, 'auto');
      assert.equal(sustainedOptionsOf({ duration: '3s' }, undefined)?.intervalMs, 3_000);
    });

    it('takes a metrics URL for a remote mesh', () => {
      assert.equal(sustainedOptionsOf({ duration: '60s', metricsUrl: 'http://127.0.0.1:8080/metrics' }, '127.0.0.1:50051')?.metricsUrl, 'http://127.0.0.1:8080/metrics');
    });

    it('refuses a duration that is not one, or is shorter than a second', () => {
      for (const duration of ['60', 'soon', '-5s', '500ms']) refused({ duration }, '--duration');
    });

    it('refuses a rate that is not a positive number of stages per second', () => {
      for (const rate of ['0', '-5', 'fast', '1e3', '100/s', '1000000']) refused({ duration: '60s', rate }, '--rate');
    });

    it('refuses an interval shorter than a second, longer than the duration, or too many intervals', () => {
      for (const interval of ['500ms', '2m', 'x']) refused({ duration: '60s', interval }, '--interval');
      refused({ duration: '2h', interval: '1s' }, '--interval');
    });

    it('refuses sustained flags without --duration, and --only with it', () => {
      refused({ rate: '100' }, '--rate');
      refused({ interval: '5s' }, '--interval');
      refused({ duration: '60s', only: 'chain' }, '--only');
    });

    it('refuses --metrics-url for the embedded mesh or when it is not an http URL', () => {
      refused({ duration: '60s', metricsUrl: 'http://127.0.0.1:8080/metrics' }, '--metrics-url');
      refused({ duration: '60s', metricsUrl: 'ftp://host/metrics' }, '--metrics-url', '127.0.0.1:50051');
      refused({ duration: '60s', metricsUrl: 'not a url' }, '--metrics-url', '127.0.0.1:50051');
    });
  });

  it('exits with the usage code on a bad flag, before starting anything', async () => {
    const writeErr = process.stderr.write.bind(process.stderr);
    const said: string[] = [];
    process.stderr.write = ((chunk: string) => (said.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      assert.equal(await main(['node', 'stagemesh', 'bench', '--duration', 'soon']), ExitCode.USAGE);
      assert.equal(await main(['node', 'stagemesh', 'bench', '--duration', '60s', '--rate', 'fast']), ExitCode.USAGE);
      assert.equal(await main(['node', 'stagemesh', 'bench', '--only', 'nothing']), ExitCode.USAGE);
    } finally {
      process.stderr.write = writeErr;
    }
    assert.match(said.join(''), /--duration expects a duration/);
    assert.match(said.join(''), /--only: unknown workload nothing/);
  });
});
