import { XMLParser } from 'fast-xml-parser';
import { TestSummary, type TestFailure } from '../../common/proto.js';

/** Failures kept per stage; the counts stay exact beyond it. */
const MAX_FAILURES = 50;
/** Characters kept of one failure message. */
const MAX_MESSAGE = 2_000;

const clip = (text: string) => (text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}…` : text);

/** Thrown when a runner's report is missing or unreadable: the counts are never guessed. */
export class TestReportError extends Error {
  override readonly name = 'TestReportError';
}

/**
 * Reads the TAP that `node --test --test-reporter=tap` writes: the counts from
 * its closing `# tests/pass/fail/skipped/todo/cancelled` lines, the failures
 * from `not ok` lines whose diagnostics say the test's own code failed.
 */
export function parseNodeTap(tap: string): TestSummary {
  const count = (name: string) => {
    const match = new RegExp(`^# ${name} (\\d+)$`, 'm').exec(tap);
    return match ? Number(match[1]) : undefined;
  };
  const total = count('tests');
  if (total === undefined) throw new TestReportError('the TAP report has no "# tests" summary line');
  const failures: TestFailure[] = [];
  const lines = tap.split('\n');
  lines.forEach((line, i) => {
    const notOk = /^(\s*)not ok \d+ - (.*?)(?: # .*)?$/.exec(line);
    if (!notOk) return;
    // The YAML diagnostics block follows, indented two more spaces, between --- and ...
    const indent = `${notOk[1]}  `;
    const block: string[] = [];
    for (let j = i + 1; j < lines.length && lines[j]!.startsWith(indent); j++) block.push(lines[j]!.slice(indent.length));
    const yaml = block.join('\n');
    if (!/failureType: '?testCodeFailure'?/.test(yaml)) return;
    const message = /^error: (?:\|-?\n((?:  .*\n?)*)|'((?:[^']|'')*)'|(.*))$/m.exec(yaml);
    const text = message ? (message[1] ?? '').split('\n').map((l) => l.replace(/^ {2}/, '')).join('\n').trim() || (message[2] ?? message[3] ?? '').replace(/''/g, "'") : '';
    if (failures.length < MAX_FAILURES) failures.push({ name: notOk[2]!.replace(/\\#/g, '#'), message: clip(text) });
  });
  const skipped = (count('skipped') ?? 0) + (count('todo') ?? 0);
  const failed = (count('fail') ?? 0) + (count('cancelled') ?? 0);
  return { total, passed: count('pass') ?? 0, failed, skipped, failures };
}

interface MochaJson {
  stats?: { tests?: number; passes?: number; failures?: number; pending?: number };
  failures?: { fullTitle?: string; title?: string; err?: { message?: string } }[];
}

/** Reads the report of mocha's `json` reporter. */
export function parseMochaJson(text: string): TestSummary {
  let report: MochaJson;
  try {
    report = JSON.parse(text) as MochaJson;
  } catch (err) {
    throw new TestReportError(`the mocha JSON report is not JSON: ${(err as Error).message}`);
  }
  if (!report.stats) throw new TestReportError('the mocha JSON report has no stats');
  const { tests = 0, passes = 0, failures = 0, pending = 0 } = report.stats;
  return TestSummary.fromPartial({
    total: tests,
    passed: passes,
    failed: failures,
    skipped: pending,
    failures: (report.failures ?? []).slice(0, MAX_FAILURES).map((f) => ({ name: f.fullTitle ?? f.title ?? '', message: clip(f.err?.message ?? '') })),
  });
}

const asList = <T>(value: T | T[] | undefined): T[] => (value === undefined ? [] : Array.isArray(value) ? value : [value]);

interface JUnitCase {
  '@_name'?: string;
  '@_classname'?: string;
  failure?: { '@_message'?: string } | string;
  error?: { '@_message'?: string } | string;
}

interface JUnitSuite {
  '@_tests'?: string;
  '@_failures'?: string;
  '@_errors'?: string;
  '@_skipped'?: string;
  testcase?: JUnitCase | JUnitCase[];
}

/** Reads a JUnit XML report (pytest's `--junitxml`): counts from the suites, failures from the test cases. */
export function parseJUnitXml(xml: string): TestSummary {
  let doc: { testsuites?: { testsuite?: JUnitSuite | JUnitSuite[] }; testsuite?: JUnitSuite | JUnitSuite[] };
  try {
    doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_' }).parse(xml);
  } catch (err) {
    throw new TestReportError(`the JUnit report is not XML: ${(err as Error).message}`);
  }
  const suites = [...asList(doc.testsuites?.testsuite), ...asList(doc.testsuite)];
  if (suites.length === 0) throw new TestReportError('the JUnit report has no testsuite');
  let total = 0;
  let failed = 0;
  let skipped = 0;
  const failures: TestFailure[] = [];
  for (const suite of suites) {
    total += Number(suite['@_tests'] ?? 0);
    failed += Number(suite['@_failures'] ?? 0) + Number(suite['@_errors'] ?? 0);
    skipped += Number(suite['@_skipped'] ?? 0);
    for (const testcase of asList(suite.testcase)) {
      const problem = testcase.failure ?? testcase.error;
      if (problem === undefined || failures.length >= MAX_FAILURES) continue;
      const message = typeof problem === 'string' ? problem : (problem['@_message'] ?? '');
      failures.push({ name: [testcase['@_classname'], testcase['@_name']].filter(Boolean).join('::'), message: clip(message) });
    }
  }
  return { total, passed: total - failed - skipped, failed, skipped, failures };
}
