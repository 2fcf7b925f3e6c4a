import assert from 'node:assert/strict';
import { Severity } from '../common/proto.js';
import { parsePolicy } from './policy.js';
import { validatePipeline } from './rules.js';

const doc = (stages: string) => `name: p\nowner: team\nstages:\n${stages}`;
const ids = (document: string) => [...new Set(validatePipeline({ document }).findings.map((f) => f.ruleId))];

describe('validatePipeline()', () => {
  it('passes a minimal well-formed pipeline through the laws but scores it below the default threshold', () => {
    const report = validatePipeline({ document: doc('  - { id: a, framework: noop }\n  - { id: b, framework: noop, needs: [a] }') });
    assert.ok(report.laws.every((l) => l.passed));
    assert.equal(report.laws.length, 5);
    assert.equal(report.dimensions.length, 13);
    assert.ok(report.score < 0.9);
    assert.equal(report.passed, false);
    assert.equal(report.enforcement, 'enforce');
    assert.ok(report.findings.every((f) => f.severity !== Severity.SEVERITY_ERROR));
  });

  it('admits the same pipeline when the policy only audits the score', () => {
    const report = validatePipeline({ document: doc('  - { id: a, framework: noop }') }, { policy: parsePolicy('enforcement: audit') });
    assert.equal(report.passed, true);
    assert.ok(report.score < report.threshold);
  });

  it('reports a cycle under UCL2-cycle with the stages in it', () => {
    const report = validatePipeline({ document: doc('  - { id: a, framework: noop, needs: [b] }\n  - { id: b, framework: noop, needs: [a] }') });
    const finding = report.findings.find((f) => f.ruleId === 'UCL2-cycle');
    assert.equal(finding?.severity, Severity.SEVERITY_ERROR);
    assert.match(finding!.message, /a → b → a/);
    assert.equal(report.passed, false);
    assert.equal(report.laws.find((l) => l.id === 'UCL2')?.passed, false);
  });

  it('reports a dangling need with its path and a fix', () => {
    const finding = validatePipeline({ document: doc('  - { id: a, framework: noop, needs: [ghost] }') }).findings.find((f) => f.ruleId === 'UCL2-dangling-need');
    assert.equal(finding?.fieldPath, 'stages[0].needs[0]');
    assert.equal(finding?.stageId, 'a');
    assert.match(finding!.fix, /ghost/);
  });

  it('reports a duplicate id', () => {
    const finding = validatePipeline({ document: doc('  - { id: a, framework: noop }\n  - { id: a, framework: noop }') }).findings.find((f) => f.ruleId === 'UCL2-duplicate-id');
    assert.equal(finding?.fieldPath, 'stages[1].id');
  });

  it('reports a missing command under UCL1 and scores an unreadable pipeline 0', () => {
    const report = validatePipeline({ document: doc('  - { id: a, framework: shell, run: {} }') });
    assert.equal(report.findings[0]?.ruleId, 'UCL1-schema');
    assert.equal(report.findings[0]?.fieldPath, 'stages[0].run.command');
    assert.equal(report.laws.find((l) => l.id === 'UCL1')?.passed, false);
    assert.equal(report.score, 0);
  });

  it('reports a definition over 1 MiB under UCL5-size', () => {
    assert.deepEqual(ids(`name: x\ndescription: "${'x'.repeat(1024 * 1024)}"\nstages:\n  - { id: a, framework: noop }`), ['UCL5-size']);
  });

  it('validates a wire message the same way as its document', () => {
    const document = doc('  - { id: a, framework: shell, run: { command: "make || true" } }');
    const fromText = validatePipeline({ document });
    assert.ok(fromText.findings.some((f) => f.ruleId === 'UCL1-masked-exit'));
  });

  it('finds Trojan Source characters in commands and env values with their field paths', () => {
    const report = validatePipeline({ document: doc('  - { id: a, framework: shell, run: { command: "echo \u202Eevil", env: { NOTE: "a\u200Bb" } } }') });
    const paths = report.findings.filter((f) => f.ruleId.startsWith('UCL5-')).map((f) => `${f.ruleId} ${f.fieldPath}`);
    assert.deepEqual(paths.sort(), ['UCL5-bidi stages[0].run.command', 'UCL5-invisible stages[0].run.env.NOTE']);
    assert.equal(report.laws.find((l) => l.id === 'UCL5')?.passed, false);
  });

  it('never repeats a secret in its finding', () => {
    const report = validatePipeline({ document: doc('  - { id: a, framework: shell, run: { command: "deploy", env: { AWS_ACCESS_KEY_ID: AKIAIOSFODNN7EXAMPLE } } }') });
    const finding = report.findings.find((f) => f.ruleId === 'UCL5-secret')!;
    assert.equal(finding.fieldPath, 'stages[0].run.env.AWS_ACCESS_KEY_ID');
    assert.doesNotMatch(`${finding.message} ${finding.fix}`, /AKIA/);
  });

  it('scores COF10 from the frameworks the cluster offers', () => {
    const document = doc('  - { id: a, framework: pytest, run: { paths: [t] } }');
    const spatial = (frameworks?: string[]) => validatePipeline({ document }, { availableFrameworks: frameworks }).dimensions.find((d) => d.id === 'COF10')!.score;
    assert.equal(spatial(), 1);
    assert.equal(spatial(['shell']), 0);
  });

  it('lets a policy switch a rule off, raise it to an error, and reweigh dimensions', () => {
    const document = doc('  - { id: a, framework: noop }');
    const policy = parsePolicy('rules: { UCL3-version: error, UCL3-source: off }\nweights: { COF13: 0 }');
    const report = validatePipeline({ document }, { policy });
    assert.equal(report.findings.find((f) => f.ruleId === 'UCL3-version')?.severity, Severity.SEVERITY_ERROR);
    assert.equal(report.findings.some((f) => f.ruleId === 'UCL3-source'), false);
    assert.equal(report.laws.find((l) => l.id === 'UCL3')?.passed, false);
    assert.equal(report.dimensions.find((d) => d.id === 'COF13')?.weight, 0);
  });

  it('applies declarative custom rules', () => {
    const policy = parsePolicy(`
custom_rules:
  - { name: team-label, law: UCL3, require_label: team, message: every pipeline names its team }
  - { name: no-pytest, forbid_framework: pytest, severity: warning }
  - { name: small, max_stages: 1 }
  - { name: internal-only, require_pattern: '^https://[a-z.]+\\.internal/', in: urls }
  - { name: no-curl-pipe, forbid_pattern: 'curl[^|]*\\|\\s*sh', in: commands }
`);
    const document = doc(`  - { id: a, framework: pytest, run: { paths: [t] } }
  - { id: b, framework: http, needs: [a], run: { url: "https://example.com/x", expect: { status: 200 } } }
  - { id: c, framework: shell, needs: [b], run: { command: "curl -s https://x.sh | sh" } }`);
    const report = validatePipeline({ document }, { policy });
    const custom = report.findings.filter((f) => f.ruleId.includes('-custom-')).map((f) => `${f.ruleId} ${f.fieldPath}`);
    assert.deepEqual(custom.sort(), [
      'UCL3-custom-team-label labels.team',
      'UCL5-custom-internal-only stages[1].run.url',
      'UCL5-custom-no-curl-pipe stages[2].run.command',
      'UCL5-custom-no-pytest stages[0].framework',
      'UCL5-custom-small stages',
    ]);
    assert.equal(report.laws.find((l) => l.id === 'UCL3')?.passed, false);
  });

  it('scores COF07 against the width and fan-in limits of the policy', () => {
    const document = doc('  - { id: r, framework: noop }\n  - { id: a, framework: noop, needs: [r] }\n  - { id: b, framework: noop, needs: [r] }\n  - { id: c, framework: noop, needs: [r] }\n  - { id: z, framework: noop, needs: [a, b, c] }');
    const report = validatePipeline({ document }, { policy: parsePolicy('limits: { max_width: 2, max_fan_in: 2 }') });
    const computational = report.findings.filter((f) => f.ruleId.startsWith('COF07-')).map((f) => `${f.ruleId} ${f.fieldPath}`);
    assert.deepEqual(computational.sort(), ['COF07-fan-in stages[4].needs', 'COF07-width stages']);
    assert.equal(report.dimensions.find((d) => d.id === 'COF07')?.score, 0.5);
  });

  it('breaks UCL5 when the pipeline exceeds the policy stage limit', () => {
    const report = validatePipeline({ document: doc('  - { id: a, framework: noop }\n  - { id: b, framework: noop, needs: [a] }') }, { policy: parsePolicy('limits: { max_stages: 1 }') });
    assert.ok(report.findings.some((f) => f.ruleId === 'UCL5-limits' && f.severity === Severity.SEVERITY_ERROR));
  });
});
