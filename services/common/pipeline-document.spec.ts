import assert from 'node:assert/strict';
import { InvalidArgumentError } from './errors.js';
import { MAX_DOCUMENT_BYTES, pipelineToData, pointerToPath, readPipeline, readPipelineOrThrow } from './pipeline-document.js';

const hello = `
name: hello
version: 2
owner: team
labels: { team: core }
inputs: { who: world, n: 3 }
defaults: { timeout: 30s, retry: { max_attempts: 2, backoff: 1s, max_backoff: 10s } }
stages:
  - id: greet
    framework: shell
    run: { command: echo hi, env: { A: b } }
    outputs: [version]
  - id: check
    framework: http
    needs: [greet]
    when: always
    timeout: 5s
    retry: { max_attempts: 3 }
    run: { url: "http://127.0.0.1:1/healthz", expect: { status: 200 } }
`;

describe('pipeline-document', () => {
  describe('readPipeline()', () => {
    it('reads the YAML format into the wire message', () => {
      const { pipeline } = readPipeline({ document: hello });
      assert.ok(pipeline);
      assert.equal(pipeline.version, '2');
      assert.deepEqual(pipeline.inputs, { who: 'world', n: '3' });
      assert.deepEqual(pipeline.defaults?.retry, { maxAttempts: 2, backoff: '1s', maxBackoff: '10s' });
      assert.deepEqual(pipeline.stages.map((s) => s.id), ['greet', 'check']);
      assert.deepEqual(pipeline.stages[0]!.run, { command: 'echo hi', env: { A: 'b' } });
      assert.equal(pipeline.stages[1]!.when, 'always');
    });

    it('reads a wire message back to the same pipeline', () => {
      const { pipeline } = readPipeline({ document: hello });
      const again = readPipeline({ pipeline: pipeline! });
      assert.deepEqual(again.pipeline, pipeline);
      assert.equal((pipelineToData(pipeline!).stages as unknown[]).length, 2);
    });

    it('accepts JSON text', () => {
      const { pipeline } = readPipeline({ document: JSON.stringify({ name: 'j', stages: [{ id: 'a', framework: 'noop' }] }) });
      assert.equal(pipeline?.stages[0]?.framework, 'noop');
    });

    it('reports malformed YAML with its line', () => {
      const { problems } = readPipeline({ document: 'name: x\nstages: [\n  - id: a\n' });
      assert.equal(problems[0]?.ruleId, 'UCL1-syntax');
      assert.equal(problems[0]?.fieldPath, 'document');
      assert.match(problems[0]!.message, /line \d+/);
    });

    it('refuses duplicate keys', () => {
      assert.equal(readPipeline({ document: 'name: a\nname: b\nstages: []' }).problems[0]?.ruleId, 'UCL1-syntax');
    });

    it('refuses a document that is not a mapping', () => {
      assert.match(readPipeline({ document: '- a\n- b' }).problems[0]!.message, /mapping/);
    });

    it('names the path of an unknown framework', () => {
      const { problems } = readPipeline({ document: 'name: x\nstages:\n  - { id: a, framework: cobol, run: {} }' });
      assert.equal(problems[0]?.fieldPath, 'stages[0].framework');
      assert.match(problems[0]!.message, /one of shell/);
    });

    it('names the path of a missing shell command', () => {
      const { problems } = readPipeline({ document: 'name: x\nstages:\n  - { id: a, framework: noop }\n  - { id: b, framework: shell, run: { cwd: . } }' });
      assert.deepEqual(problems.map((p) => p.fieldPath), ['stages[1].run.command']);
    });

    it('names unknown keys with their path', () => {
      const { problems } = readPipeline({ document: 'name: x\nstages:\n  - { id: a, framework: shell, run: { comand: ls } }' });
      assert.ok(problems.some((p) => p.fieldPath === 'stages[0].run.comand' && /unknown key/.test(p.message)));
    });

    it('refuses a definition over 1 MiB before parsing it', () => {
      const { problems } = readPipeline({ document: `name: big\n# ${'x'.repeat(MAX_DOCUMENT_BYTES)}\nstages: []` });
      assert.equal(problems[0]?.ruleId, 'UCL5-size');
    });

    it('refuses bad durations and names', () => {
      const { problems } = readPipeline({ document: 'name: Bad_Name\nstages:\n  - { id: a, framework: noop, timeout: soon }' });
      assert.deepEqual(problems.map((p) => p.fieldPath).sort(), ['name', 'stages[0].timeout']);
    });

    it('asks for a definition when none is given', () => {
      assert.equal(readPipeline({}).problems[0]?.fieldPath, 'pipeline');
    });
  });

  describe('readPipelineOrThrow()', () => {
    it('throws InvalidArgumentError with the first field path', () => {
      assert.throws(
        () => readPipelineOrThrow({ document: 'name: x\nstages:\n  - { id: a, framework: cobol }' }),
        (err: unknown) => err instanceof InvalidArgumentError && err.fieldPath === 'stages[0].framework',
      );
    });
  });

  describe('pointerToPath()', () => {
    it('turns JSON pointers into dotted paths with indexes', () => {
      assert.equal(pointerToPath('/stages/3/run/env', 'A~1B'), 'stages[3].run.env.A~1B');
      assert.equal(pointerToPath(''), '');
    });
  });
});
