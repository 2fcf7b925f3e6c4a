import assert from 'node:assert/strict';
import { parseJUnitXml, parseMochaJson, parseNodeTap, TestReportError } from './test-reports.js';

const tap = `TAP version 13
# Subtest: adds
ok 1 - adds
  ---
  duration_ms: 0.5
  ...
# Subtest: suite
    # Subtest: breaks
    not ok 1 - breaks
      ---
      duration_ms: 1.2
      failureType: 'testCodeFailure'
      error: |-
        Expected values to be strictly equal:
        1 !== 2
      code: 'ERR_ASSERTION'
      ...
    1..1
not ok 2 - suite
  ---
  duration_ms: 2
  failureType: 'subtestsFailed'
  error: '1 subtest failed'
  ...
# Subtest: quoted
not ok 3 - quoted \\# hash
  ---
  failureType: 'testCodeFailure'
  error: 'it''s wrong'
  ...
1..3
# tests 3
# suites 1
# pass 1
# fail 2
# cancelled 0
# skipped 0
# todo 1
# duration_ms 10
`;

describe('test reports', () => {
  describe('parseNodeTap()', () => {
    it('takes the counts from the summary and names leaf failures with their messages', () => {
      const summary = parseNodeTap(tap);
      assert.deepEqual({ ...summary, failures: undefined }, { total: 3, passed: 1, failed: 2, skipped: 1, failures: undefined });
      assert.deepEqual(summary.failures, [
        { name: 'breaks', message: 'Expected values to be strictly equal:\n1 !== 2' },
        { name: 'quoted # hash', message: "it's wrong" },
      ]);
    });

    it('refuses a report without a summary rather than guessing', () => {
      assert.throws(() => parseNodeTap('ok 1 - x\n'), TestReportError);
    });
  });

  describe('parseMochaJson()', () => {
    it('reads stats and failures', () => {
      const summary = parseMochaJson(JSON.stringify({ stats: { tests: 4, passes: 2, failures: 1, pending: 1 }, failures: [{ fullTitle: 'api breaks', err: { message: 'boom' } }] }));
      assert.deepEqual(summary, { total: 4, passed: 2, failed: 1, skipped: 1, failures: [{ name: 'api breaks', message: 'boom' }] });
    });

    it('refuses what is not a mocha report', () => {
      assert.throws(() => parseMochaJson('not json'), TestReportError);
      assert.throws(() => parseMochaJson('{}'), TestReportError);
    });
  });

  describe('parseJUnitXml()', () => {
    it('sums every suite and names failures and errors', () => {
      const xml = `<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="5" failures="1" errors="1" skipped="1">
        <testcase classname="tests.test_a" name="test_ok"/>
        <testcase classname="tests.test_a" name="test_bad"><failure message="assert 1 == 2">trace</failure></testcase>
        <testcase classname="tests.test_b" name="test_err"><error message="ImportError">trace</error></testcase>
        <testcase classname="tests.test_b" name="test_skip"><skipped message="no"/></testcase>
        <testcase classname="tests.test_b" name="test_ok2"/>
      </testsuite></testsuites>`;
      assert.deepEqual(parseJUnitXml(xml), {
        total: 5,
        passed: 2,
        failed: 2,
        skipped: 1,
        failures: [
          { name: 'tests.test_a::test_bad', message: 'assert 1 == 2' },
          { name: 'tests.test_b::test_err', message: 'ImportError' },
        ],
      });
    });

    it('reads a lone testsuite and refuses a document without one', () => {
      assert.equal(parseJUnitXml('<testsuite tests="1" failures="0" errors="0" skipped="0"><testcase name="t"/></testsuite>').passed, 1);
      assert.throws(() => parseJUnitXml('<html/>'), TestReportError);
    });
  });
});
