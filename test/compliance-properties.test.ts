import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { InvalidArgumentError } from '../services/common/errors.js';
import { readPipelineOrThrow } from '../services/common/pipeline-document.js';
import { Pipeline, type Report } from '../services/common/proto.js';
import { RULES } from '../services/compliance/rule-catalog.js';
import { validatePipeline } from '../services/compliance/rules.js';
import { repoRoot } from './support/tools.js';

/** A report is well-formed: a score in 0..1, five laws, thirteen dimensions, findings of known rules with paths. */
function assertWellFormed(report: Report): void {
  assert.ok(report.score >= 0 && report.score <= 1, `score ${report.score}`);
  assert.equal(report.laws.length, 5);
  assert.equal(report.dimensions.length, 13);
  for (const d of report.dimensions) assert.ok(d.score >= 0 && d.score <= 1, `${d.id} ${d.score}`);
  for (const f of report.findings) {
    assert.ok(RULES.has(f.ruleId), `unknown rule ${f.ruleId}`);
    assert.ok(f.fieldPath, `${f.ruleId} without field path`);
  }
  if (report.passed) assert.ok(report.laws.every((l) => l.passed));
}

/** Validation never throws: whatever the input, a well-formed report. */
function check(input: { document?: string; pipeline?: Pipeline }): void {
  assertWellFormed(validatePipeline(input));
}

/** The shared reader (the scheduler's admission path) fails with INVALID_ARGUMENT only. */
function checkReader(input: { document?: string; pipeline?: Pipeline }): void {
  try {
    readPipelineOrThrow(input);
  } catch (err) {
    assert.ok(err instanceof InvalidArgumentError, `${(err as Error).name}: ${(err as Error).message}`);
  }
}

const fixtureDir = join(repoRoot, 'test', 'fixtures', 'compliance');
// The small fixtures: mutating the 100-stage ones costs time and finds nothing the small ones do not.
const seeds = ['good', 'bad'].flatMap((dir) => readdirSync(join(fixtureDir, dir)).map((f) => readFileSync(join(fixtureDir, dir, f), 'utf8'))).filter((t) => t.length < 4_096);

const tricky = fc.constantFrom('\u202E', '\u2066', '\u200B', '\uFEFF', 'e\u0301', '\u0000', '${{', '}}', '${{ stages.build.outputs.version }}', ':latest', '|| true', 'AKIAIOSFODNN7EXAMPLE', '&a', '*a', '<<: *a', '- ', ': ', '\n', '\t', '"', "'", '#', '{', '[', 'needs: [', 'id: build');
const text = fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.array(tricky, { maxLength: 8 }).map((parts) => parts.join('')));

/** Random edits of a valid or broken fixture: delete, insert, duplicate or swap lines. */
const mutated = fc
  .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 3 }), text), { minLength: 1, maxLength: 4 }))
  .map(([seed, edits]) => {
    let lines = seed.split('\n');
    for (const [a, b, kind, insert] of edits) {
      const i = a % lines.length;
      const j = b % lines.length;
      if (kind === 0) lines.splice(i, 1);
      else if (kind === 1) lines[i] = `${lines[i]!.slice(0, j % (lines[i]!.length + 1))}${insert}${lines[i]!.slice(j % (lines[i]!.length + 1))}`;
      else if (kind === 2) lines.splice(i, 0, lines[j]!);
      else [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      if (lines.length === 0) lines = [''];
    }
    return lines.join('\n');
  });

const id = fc.oneof(fc.constantFrom('a', 'b', 'c', 'build', 'test'), fc.string({ maxLength: 6 }));
const value = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), text);
const stage = fc.record(
  {
    id,
    framework: fc.constantFrom('shell', 'noop', 'http', 'sleep', 'node-test', 'mocha', 'pytest', 'wait-event', 'cobol'),
    needs: fc.array(id, { maxLength: 3 }),
    when: fc.constantFrom('on_success', 'always', 'on_failure', 'never'),
    timeout: fc.constantFrom('5m', '30s', 'soon', ''),
    retry: fc.record({ max_attempts: fc.integer({ min: -1, max: 5 }), backoff: fc.constantFrom('1s', 'x') }, { requiredKeys: [] }),
    outputs: fc.array(fc.constantFrom('version', 'v', 'bad key'), { maxLength: 2 }),
    description: text,
    resources: fc.dictionary(fc.constantFrom('cpu', 'memory'), fc.string()),
    run: fc.oneof(
      fc.record({ command: text, env: fc.dictionary(fc.constantFrom('TOKEN', 'A', 'DB_PASSWORD'), value), cwd: fc.string() }, { requiredKeys: [] }),
      fc.record({ url: fc.oneof(fc.webUrl(), text), method: fc.constantFrom('GET', 'POST', 'BREW'), expect: fc.record({ status: fc.integer({ min: 0, max: 700 }) }) }, { requiredKeys: [] }),
      fc.record({ duration: fc.constantFrom('1s', 'x'), event: text, files: fc.array(fc.string()), spec: fc.array(fc.string()), paths: fc.array(fc.string()) }, { requiredKeys: [] }),
      value,
    ),
    matrix: fc.dictionary(fc.constantFrom('os', 'py'), fc.array(fc.constantFrom('a', 1, true), { maxLength: 3 })),
  },
  { requiredKeys: ['id'] },
);
const pipelineData = fc.record(
  {
    name: fc.oneof(fc.constantFrom('p', 'checkout'), fc.string()),
    version: fc.oneof(fc.string(), fc.integer()),
    description: text,
    owner: fc.string(),
    source: fc.oneof(fc.webUrl(), text),
    labels: fc.dictionary(fc.string({ maxLength: 5 }), value),
    defaults: fc.record({ timeout: fc.constantFrom('5m', 'x'), retry: fc.record({ max_attempts: fc.integer({ min: 0, max: 3 }) }) }, { requiredKeys: [] }),
    stages: fc.oneof(fc.array(stage, { maxLength: 4 }), value),
  },
  { requiredKeys: ['stages'] },
);

describe('compliance - 10,000 random and mutated pipelines', function () {
  this.timeout(60_000);

  it('never crashes on random text (6,000 documents)', () => {
    fc.assert(fc.property(text, (document) => check({ document })), { numRuns: 6_000 });
  });

  it('never crashes on mutated fixtures (1,500 documents)', () => {
    fc.assert(fc.property(mutated, (document) => check({ document })), { numRuns: 1_500 });
  });

  it('never crashes on random pipeline-shaped data as YAML and JSON (1,500 documents)', () => {
    fc.assert(fc.property(pipelineData, fc.boolean(), (data, asJson) => check({ document: asJson ? JSON.stringify(data) : stringify(data) })), { numRuns: 1_500 });
  });

  it('reads random and mutated documents without aliases, with INVALID_ARGUMENT as the only error (1,000 documents)', () => {
    fc.assert(fc.property(fc.oneof(text, mutated).filter((d) => !d.includes('*')), (document) => checkReader({ document })), { numRuns: 1_000 });
  });

  // yaml's toJS() throws for an alias whose anchor is defined later or never (`*a`).
  it('reads a document with an unresolved alias as INVALID_ARGUMENT', () => {
    checkReader({ document: 'name: x\nstages: [*a]' });
  });

  it('never crashes on random wire messages (1,000 pipelines)', () => {
    fc.assert(
      fc.property(pipelineData, (data) => {
        const stages = Array.isArray(data.stages) ? data.stages : [];
        const pipeline = Pipeline.fromPartial({
          name: String(data.name ?? ''),
          description: String(data.description ?? ''),
          stages: stages.map((s) => ({ id: String(s.id), framework: s.framework ?? '', needs: s.needs ?? [], when: s.when ?? '', timeout: s.timeout ?? '', description: String(s.description ?? ''), run: typeof s.run === 'object' && s.run !== null ? (s.run as Record<string, unknown>) : undefined, outputs: s.outputs ?? [] })),
        });
        check({ pipeline });
      }),
      { numRuns: 1_000 },
    );
  });
});
