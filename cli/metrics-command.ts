import { status, type ServiceError } from '@grpc/grpc-js';
import type { Command } from 'commander';
import { parseDurationMs } from '../services/common/duration.js';
import { callUnary } from '../services/common/grpc-client.js';
import { Baseline, GroupBy, QueryResponse, WatchResponse, type LatencySummary, type MetricSeries, type MetricsClient } from '../services/common/proto.js';
import { addressOf } from './address.js';
import { CliError, ExitCode } from './cli-error.js';
import { palette } from './output.js';
import { withMesh } from './with-mesh.js';

const GROUP_BY: Record<string, GroupBy> = {
  none: GroupBy.GROUP_BY_UNSPECIFIED,
  framework: GroupBy.GROUP_BY_FRAMEWORK,
  node: GroupBy.GROUP_BY_NODE,
  pipeline: GroupBy.GROUP_BY_PIPELINE,
};

function groupByOption(text: string): GroupBy {
  const groupBy = GROUP_BY[text];
  if (groupBy === undefined) throw new CliError(`--group-by expects one of ${Object.keys(GROUP_BY).join(', ')}, got "${text}"`, ExitCode.USAGE);
  return groupBy;
}

function windowOption(text: string): string {
  if (!['1m', '5m', '1h'].includes(text)) throw new CliError(`--window expects 1m, 5m or 1h, got "${text}"`, ExitCode.USAGE);
  return text;
}

const rate = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(2));
const ms = (n: number) => (n >= 100 ? n.toFixed(0) : String(Math.round(n * 10) / 10));
const percentiles = (l: LatencySummary | undefined) => (l && l.count > 0 ? `${ms(l.p50Ms)}/${ms(l.p95Ms)}/${ms(l.p99Ms)}` : '-');

/**
 * The metrics as a table: one line per group with throughput, counts and the
 * p50/p95/p99 of queue wait, execution and end-to-end latency in milliseconds.
 */
export function formatMetricsTable(window: string, groupBy: GroupBy, series: readonly MetricSeries[], at = new Date()): string {
  const c = palette();
  const by = (Object.entries(GROUP_BY).find(([, v]) => v === groupBy)?.[0] ?? 'none').replace('none', 'all stages');
  const header = ['GROUP', 'STAGES/S', 'RUNS/S', 'OK', 'FAILED', 'RETRIES', 'QUEUE ms', 'EXEC ms', 'E2E ms'];
  const rows = series.map((s) => [
    s.group || (groupBy === GroupBy.GROUP_BY_UNSPECIFIED ? '(all)' : '(none)'),
    rate(s.stagesPerSec),
    rate(s.runsPerSec),
    String(s.stagesSucceeded),
    String(s.stagesFailed),
    String(s.retries),
    percentiles(s.queueWait),
    percentiles(s.execution),
    percentiles(s.endToEnd),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  const title = c.bold(`window ${window}, by ${by}`) + c.dim(`   ${at.toISOString()}   latency p50/p95/p99`);
  const body = rows.length ? rows.map(line).join('\n') : c.dim('(no stage finished in this window)');
  return `${title}\n${c.dim(line(header))}\n${body}`;
}

async function watchMetrics(client: MetricsClient, request: { window: string; groupBy: GroupBy; interval: string }, onUpdate: (update: WatchResponse) => void, signal: AbortSignal): Promise<void> {
  const stream = client.watch(request);
  const stop = () => stream.cancel();
  signal.addEventListener('abort', stop, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      stream.on('data', onUpdate);
      stream.on('error', (err: ServiceError) => (err.code === status.CANCELLED ? resolve() : reject(err)));
      stream.on('end', resolve);
    });
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

/** Parses --p95 ("250ms", "2s", or a number of milliseconds). */
function p95Option(text: string): number {
  const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : parseDurationMs(text);
  if (value === undefined) throw new CliError(`--p95 expects a duration such as 250ms, got "${text}"`, ExitCode.USAGE);
  return value;
}

function numberOption(flag: string, text: string | undefined): number {
  if (text === undefined) return 0;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new CliError(`${flag} expects a number, got "${text}"`, ExitCode.USAGE);
  return value;
}

/** Registers `stagemesh metrics` and `stagemesh metrics baseline set|list`. */
export function registerMetricsCommand(program: Command): void {
  const metrics = program
    .command('metrics')
    .description('a live table of throughput and latency percentiles (Ctrl-C stops); `metrics baseline` stores baselines for regression detection')
    .option('--window <window>', 'sliding window: 1m, 5m or 1h', '1m')
    .option('--group-by <dimension>', 'framework, node, pipeline or none', 'framework')
    .option('--interval <duration>', 'time between updates', '1s')
    .option('--once', 'print the table once and exit')
    .option('--json', 'print the figures as JSON (with --once: one object; live: one object per line)')
    .action(async (opts: { window: string; groupBy: string; interval: string; once?: boolean; json?: boolean }) => {
      const window = windowOption(opts.window);
      const groupBy = groupByOption(opts.groupBy);
      const live = !opts.once && !opts.json && process.stdout.isTTY;
      const write = (text: string) => process.stdout.write(live ? `\u001b[H\u001b[2J${text}\n` : `${text}\n${opts.once || opts.json ? '' : '\n'}`);
      await withMesh(addressOf(program), async (clients, signal) => {
        if (opts.once) {
          const response = await callUnary(clients.metrics.query.bind(clients.metrics), { window, groupBy }, { timeoutMs: 10_000, signal });
          write(opts.json ? JSON.stringify(QueryResponse.toJSON(response)) : formatMetricsTable(response.window, groupBy, response.series));
          return;
        }
        const render = (m: WatchResponse) => (opts.json ? JSON.stringify(WatchResponse.toJSON(m)) : formatMetricsTable(m.window, groupBy, m.series));
        await watchMetrics(clients.metrics, { window, groupBy, interval: opts.interval }, (m) => write(render(m)), signal);
      });
    });

  const baseline = metrics.command('baseline').description('store and list the baselines regressions are measured against');
  baseline
    .command('set <name>')
    .description('store a named baseline; a regression past the tolerance publishes metrics.regression')
    .option('--stages-per-sec <n>', 'expected throughput (such as 52.2)')
    .option('--p95 <duration>', 'expected p95 of stage end-to-end latency (such as 250ms)')
    .option('--tolerance <ratio>', 'allowed regression, 0.1 = 10 %', '0.1')
    .option('--window <window>', 'window compared: 1m, 5m or 1h', '5m')
    .option('--group-by <dimension>', 'compare one group only: framework, node or pipeline (with --group)', 'none')
    .option('--group <value>', 'the group compared (such as shell)')
    .option('--min-samples <n>', 'finished stages the window must hold before it is compared', '20')
    .action(async (name: string, opts: { stagesPerSec?: string; p95?: string; tolerance: string; window: string; groupBy: string; group?: string; minSamples: string }) => {
      const request = Baseline.fromPartial({
        name,
        stagesPerSec: numberOption('--stages-per-sec', opts.stagesPerSec),
        p95Ms: opts.p95 === undefined ? 0 : p95Option(opts.p95),
        tolerance: numberOption('--tolerance', opts.tolerance),
        window: windowOption(opts.window),
        groupBy: groupByOption(opts.groupBy),
        group: opts.group ?? '',
        minSamples: numberOption('--min-samples', opts.minSamples),
      });
      await withMesh(addressOf(program), async (clients, signal) => {
        const { baseline: stored } = await callUnary(clients.metrics.setBaseline.bind(clients.metrics), { baseline: request }, { timeoutMs: 10_000, signal });
        process.stdout.write(`${JSON.stringify(Baseline.toJSON(stored!))}\n`);
      });
    });
  baseline
    .command('list')
    .description('list the stored baselines as JSON, one per line')
    .action(async () => {
      await withMesh(addressOf(program), async (clients, signal) => {
        const { baselines } = await callUnary(clients.metrics.listBaselines.bind(clients.metrics), {}, { timeoutMs: 10_000, signal });
        for (const b of baselines) process.stdout.write(`${JSON.stringify(Baseline.toJSON(b))}\n`);
      });
    });
}
