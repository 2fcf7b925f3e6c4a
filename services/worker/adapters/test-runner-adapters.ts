import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { OutcomeStatus, type Task, type TestSummary } from '../../common/proto.js';
import type { AttemptControl, AttemptResult, FrameworkAdapter } from './framework-adapter.js';
import { runProcess } from './run-process.js';
import { parseOutputs, processResult, stageEnvironment, withAttemptDir } from './shell-adapter.js';
import { parseJUnitXml, parseMochaJson, parseNodeTap, TestReportError } from './test-reports.js';

interface TestRunSpec {
  cwd?: string;
  env?: Record<string, string>;
}

/** How one test runner is started and how its report is read. */
interface RunnerDefinition<Spec extends TestRunSpec> {
  framework: string;
  /** The program and arguments, writing its machine-readable report to `reportFile`. */
  command(spec: Spec, reportFile: string): { command: string; args: string[] };
  parse(report: string): TestSummary;
}

/**
 * A test-runner stage: runs the runner, then reads the counts and failures
 * from the runner's own report (never from its console output). The stage
 * succeeds when the runner exits 0 and the report shows no failure.
 */
class TestRunnerAdapter<Spec extends TestRunSpec> implements FrameworkAdapter {
  readonly framework: string;

  constructor(private readonly runner: RunnerDefinition<Spec>) {
    this.framework = runner.framework;
  }

  run(task: Task, attempt: AttemptControl): Promise<AttemptResult> {
    const spec = (task.run ?? {}) as Spec;
    return withAttemptDir(async (dir) => {
      const reportFile = join(dir, 'report');
      const outputFile = join(dir, 'outputs');
      const { command, args } = this.runner.command(spec, reportFile);
      const result = await runProcess({ command, args, cwd: spec.cwd, env: stageEnvironment(task, outputFile, spec.env), timeoutMs: task.timeoutMs, signal: attempt.signal });
      const outputs = parseOutputs(await readFile(outputFile, 'utf8').catch(() => ''), task.outputs);
      let tests: TestSummary | undefined;
      let reportError = '';
      if (!result.stopReason) {
        try {
          tests = this.runner.parse(await readFile(reportFile, 'utf8'));
        } catch (err) {
          reportError = err instanceof TestReportError ? err.message : `no report from ${this.framework}: ${(err as Error).message}`;
        }
      }
      const outcome = processResult(task, result, result.exitCode === 0 && tests !== undefined && tests.failed === 0);
      outcome.evidence.tests = tests;
      if (reportError && outcome.status !== OutcomeStatus.OUTCOME_STATUS_CANCELLED) outcome.evidence.error ||= reportError;
      return { ...outcome, outputs };
    });
  }
}

/** The mocha to run for a stage: the project's own (node_modules/.bin up from cwd), else the one found on this machine. */
export function findMocha(cwd: string, fallback?: string): string | undefined {
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', '.bin', 'mocha');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return fallback;
  }
}

/** `node --test` with its TAP reporter written to a file (and the spec reporter to the log). */
export function nodeTestAdapter(): FrameworkAdapter {
  return new TestRunnerAdapter<TestRunSpec & { files: string[] }>({
    framework: 'node-test',
    command: (spec, reportFile) => ({
      command: process.execPath,
      args: ['--test', '--test-reporter=tap', `--test-reporter-destination=${reportFile}`, '--test-reporter=spec', '--test-reporter-destination=stdout', ...spec.files],
    }),
    parse: parseNodeTap,
  });
}

/** mocha with its JSON reporter written to a file. */
export function mochaAdapter(mocha: string): FrameworkAdapter {
  return new TestRunnerAdapter<TestRunSpec & { spec: string[] }>({
    framework: 'mocha',
    command: (spec, reportFile) => ({
      command: findMocha(spec.cwd || process.cwd(), mocha)!,
      args: ['--reporter', 'json', '--reporter-option', `output=${reportFile}`, ...spec.spec],
    }),
    parse: parseMochaJson,
  });
}

/** pytest with its JUnit XML report written to a file. */
export function pytestAdapter(pytest: string): FrameworkAdapter {
  return new TestRunnerAdapter<TestRunSpec & { paths: string[]; args?: string[] }>({
    framework: 'pytest',
    command: (spec, reportFile) => ({
      command: pytest,
      args: [`--junitxml=${reportFile}`, '-p', 'no:cacheprovider', ...(spec.args ?? []), ...spec.paths],
    }),
    parse: parseJUnitXml,
  });
}
