import { status } from '@grpc/grpc-js';
import { formatDurationMs } from '../services/common/duration.js';
import { FIELD_PATH_METADATA, isServiceError } from '../services/common/grpc-status.js';
import { RunState, Severity, StageState, type Event, type Finding, type Report, type Run, type StageRun } from '../services/common/proto.js';
import { CliError, ExitCode } from './cli-error.js';

/** ANSI colours, only when writing to a terminal that wants them. */
export function palette(stream: NodeJS.WriteStream = process.stdout) {
  const on = Boolean(stream.isTTY) && !process.env.NO_COLOR;
  const wrap = (code: number) => (text: string) => (on ? `\u001b[${code}m${text}\u001b[0m` : text);
  return { red: wrap(31), green: wrap(32), yellow: wrap(33), dim: wrap(2), bold: wrap(1) };
}

export const runStateName = (state: RunState) => (RunState[state] ?? 'UNKNOWN').replace('RUN_STATE_', '');
export const stageStateName = (state: StageState) => (StageState[state] ?? 'UNKNOWN').replace('STAGE_STATE_', '');

const STAGE_MARK: Record<string, string> = { SUCCEEDED: '✓', FAILED: '✗', CANCELLED: '⊘', SKIPPED: '-', QUEUED: '…', RUNNING: '▶', PENDING: '·' };

function stageDurationMs(stage: StageRun): number {
  return stage.attempts.reduce((sum, a) => sum + (a.evidence?.durationMs ?? 0), 0);
}

/** One line for a stage: mark, id, state, duration and attempts. */
export function formatStageLine(stage: StageRun, width: number): string {
  const c = palette();
  const state = stageStateName(stage.state);
  const colour = state === 'SUCCEEDED' ? c.green : state === 'FAILED' ? c.red : state === 'CANCELLED' ? c.yellow : c.dim;
  const attempts = stage.attempts.length > 1 ? c.dim(` (${stage.attempts.length} attempts)`) : '';
  const duration = stage.attempts.length ? formatDurationMs(stageDurationMs(stage)) : '';
  const tests = stage.attempts.at(-1)?.evidence?.tests;
  const counts = tests ? c.dim(`  tests: ${tests.passed} passed, ${tests.failed} failed, ${tests.skipped} skipped of ${tests.total}`) : '';
  return `  ${colour(STAGE_MARK[state] ?? '?')} ${stage.stageId.padEnd(width)}  ${colour(state.padEnd(9))}  ${duration}${attempts}${counts}`;
}

const EVENT_STATE: Record<string, string> = {
  'stage.ready': 'QUEUED',
  'stage.succeeded': 'SUCCEEDED',
  'stage.failed': 'FAILED',
  'stage.cancelled': 'CANCELLED',
  'stage.skipped': 'SKIPPED',
  'stage.retrying': 'RETRYING',
};

/** One progress line for a lifecycle event of a stage, as `stagemesh run` prints it live. */
export function formatStageEvent(event: Event, width: number): string {
  const c = palette(process.stderr);
  const state = EVENT_STATE[event.type] ?? event.type;
  const data = (event.data ?? {}) as Record<string, unknown>;
  const colour = state === 'SUCCEEDED' ? c.green : state === 'FAILED' ? c.red : state === 'CANCELLED' || state === 'RETRYING' ? c.yellow : c.dim;
  const mark = state === 'RETRYING' ? '↻' : (STAGE_MARK[state] ?? '·');
  const detail = data.duration_ms !== undefined && state !== 'QUEUED' ? formatDurationMs(Number(data.duration_ms)) : '';
  const why = state === 'RETRYING' || state === 'FAILED' ? c.dim(` ${String(data.error ?? '')}`.trimEnd()) : '';
  return `  ${colour(mark)} ${(event.attributes.stage_id ?? '').padEnd(width)}  ${colour(state.padEnd(9))}  ${detail}${why}`;
}

/** The per-stage summary printed when a run ends, with the output tail of failed stages. */
export function formatRunSummary(run: Run): string {
  const c = palette();
  const state = runStateName(run.state);
  const elapsed = run.finishedAt && run.createdAt ? ` in ${formatDurationMs(run.finishedAt.getTime() - run.createdAt.getTime())}` : '';
  const colour = state === 'SUCCEEDED' ? c.green : state === 'RUNNING' || state === 'PENDING' ? c.yellow : c.red;
  const width = Math.max(...run.stages.map((s) => s.stageId.length), 5);
  const lines = [`${c.bold(`run ${run.runId}`)} ${run.pipelineName}@${run.pipelineVersion} ${colour(state)}${elapsed}`];
  if (run.reason) lines.push(`  ${c.dim(run.reason)}`);
  for (const stage of run.stages) lines.push(formatStageLine(stage, width));
  for (const stage of run.stages) {
    if (stage.state !== StageState.STAGE_STATE_FAILED) continue;
    const last = stage.attempts[stage.attempts.length - 1];
    const evidence = last?.evidence;
    lines.push('', c.red(`stage ${stage.stageId} failed`) + (evidence ? ` (exit code ${evidence.exitCode})` : ''));
    if (evidence?.error) lines.push(`  ${evidence.error}`);
    for (const failure of evidence?.tests?.failures ?? []) lines.push(`  ${c.red('✗')} ${failure.name}: ${failure.message.split('\n')[0]}`);
    const tail = (evidence?.logTail ?? '').trimEnd().split('\n').slice(-20);
    if (tail.join('').length) lines.push(c.dim('  output tail (stdout and stderr):'), ...tail.map((l) => `    ${l}`));
  }
  return lines.join('\n');
}

const SEVERITY_ORDER = [Severity.SEVERITY_ERROR, Severity.SEVERITY_WARNING, Severity.SEVERITY_INFO, Severity.SEVERITY_UNSPECIFIED];
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * A validation report for people: the gate's verdict with score and
 * threshold, the laws and the dimensions below 1, then the findings grouped
 * by stage (pipeline-level first), errors first, each with its rule id,
 * field path, message and fix. Coloured on a terminal.
 */
export function formatReport(file: string, report: Report): string {
  const c = palette();
  const count = (s: Severity) => report.findings.filter((f) => f.severity === s).length;
  const [errors, warnings, notes] = [count(Severity.SEVERITY_ERROR), count(Severity.SEVERITY_WARNING), count(Severity.SEVERITY_INFO)];
  const broken = report.laws.filter((l) => !l.passed);
  const below = report.score < report.threshold;
  const verdict = report.passed ? c.green('ok') : c.red('FAILED');
  const scoreText = `score ${report.score.toFixed(2)} ${below ? '<' : '≥'} threshold ${report.threshold.toFixed(2)}${below && report.enforcement === 'audit' ? ' (not enforced: policy audits)' : ''}`;
  const counts = [errors && c.red(plural(errors, 'error')), warnings && c.yellow(plural(warnings, 'warning')), notes && plural(notes, 'note')].filter(Boolean).join(', ');
  const lines = [`${c.bold(file)}: ${verdict} — ${below && !report.passed ? c.red(scoreText) : scoreText}${counts ? `; ${counts}` : ''}`];
  if (report.laws.length) {
    lines.push(`  laws: ${report.laws.map((l) => (l.passed ? c.green(`${l.id} ✓`) : c.red(`${l.id} ${l.name} ✗`))).join('  ')}`);
  }
  const weak = report.dimensions.filter((d) => d.score < 1);
  if (weak.length && report.laws.length) lines.push(`  ${c.dim(`dimensions below 1: ${weak.map((d) => `${d.id} ${d.name} ${d.score.toFixed(2)}`).join(', ')}`)}`);
  if (broken.length === 0 && !report.passed) lines.push(`  ${c.red('the score is below the threshold: the notes and warnings below say what raises it')}`);
  const groups = new Map<string, Finding[]>();
  for (const f of report.findings) groups.set(f.stageId, [...(groups.get(f.stageId) ?? []), f]);
  // Pipeline-level findings first, then stages in the order the pipeline lists them.
  const position = (stage: string) => (stage === '' ? -1 : Number(/^stages\[(\d+)\]/.exec(groups.get(stage)![0]!.fieldPath)?.[1] ?? Number.MAX_SAFE_INTEGER));
  const order = [...groups.keys()].sort((a, b) => position(a) - position(b));
  for (const stage of order) {
    lines.push(`  ${stage ? `stage ${c.bold(stage)}` : 'pipeline'}:`);
    const findings = groups.get(stage)!.sort((a, b) => SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity));
    for (const f of findings) {
      const severity = f.severity === Severity.SEVERITY_ERROR ? c.red('error  ') : f.severity === Severity.SEVERITY_WARNING ? c.yellow('warning') : c.dim('note   ');
      lines.push(`    ${severity} ${c.bold(f.ruleId)} at ${f.fieldPath}: ${f.message}`);
      if (f.fix) lines.push(`            ${c.dim(`fix: ${f.fix}`)}`);
    }
  }
  return lines.join('\n');
}

/** Turns a failed gRPC call into a readable CLI error. */
export function describeCallError(err: unknown, address: string): CliError {
  if (!isServiceError(err)) return new CliError((err as Error).message ?? String(err));
  if (err.code === status.UNAVAILABLE) {
    return new CliError(`cannot reach stagemesh at ${address} (${err.details}); start it with \`make start\` or pass --address`, ExitCode.FAILED, { cause: err });
  }
  const fieldPath = err.metadata?.get(FIELD_PATH_METADATA)[0];
  return new CliError(`${status[err.code]}: ${err.details}${fieldPath && !err.details.startsWith(String(fieldPath)) ? ` (at ${fieldPath})` : ''}`, ExitCode.FAILED, { cause: err });
}
