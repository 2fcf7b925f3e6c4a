import { readPipeline } from '../services/common/pipeline-document.js';
import type { Pipeline } from '../services/common/proto.js';
import { validatePipeline } from '../services/compliance/rules.js';

/**
 * A realistic 1,000-stage pipeline as YAML: 50 layers of 20 shell stages,
 * each needing two stages of the layer before, with description, timeout,
 * resources, env, a command reading an upstream output, and an output.
 */
export function thousandStageDocument(stageCount = 1_000, width = 20): string {
  const lines = [
    'name: validate-bench',
    'version: "1"',
    'description: One thousand stages to measure the compliance engine',
    'owner: bench',
    'source: https://example.com/bench.yaml',
    'labels: { team: bench }',
    'defaults: { timeout: 5m, retry: { max_attempts: 2, backoff: 1s } }',
    'stages:',
  ];
  for (let i = 0; i < stageCount; i++) {
    const layer = Math.floor(i / width);
    const needs = layer === 0 ? [] : [`s${(layer - 1) * width + (i % width)}`, `s${(layer - 1) * width + ((i + 1) % width)}`];
    const read = needs.length ? ` \${{ stages.${needs[0]}.outputs.v }}` : '';
    lines.push(
      `  - id: s${i}`,
      '    framework: shell',
      `    description: Step ${i} of layer ${layer}`,
      needs.length ? `    needs: [${needs.join(', ')}]` : '    needs: []',
      '    resources: { cpu: 100m, memory: 64Mi }',
      `    run: { command: 'echo "step ${i}${read}" && echo "v=${i}" >> "$STAGEMESH_OUTPUT"', cwd: ., env: { LC_ALL: C } }`,
      '    outputs: [v]',
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Median of `runs` timed validations after two warm-up runs, in milliseconds (two decimals). */
function medianMs(runs: number, validate: () => void): number {
  for (let i = 0; i < 2; i++) validate();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    validate();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return Math.round(times[Math.floor(times.length / 2)]! * 100) / 100;
}

/** The benchmark pipeline as the wire message the scheduler sends to Validate. */
export function thousandStagePipeline(): Pipeline {
  const read = readPipeline({ document: thousandStageDocument() });
  if (!read.pipeline) throw new Error(`the benchmark pipeline does not parse: ${read.problems[0]?.message}`);
  return read.pipeline;
}

/**
 * Validates a 1,000-stage pipeline message (what the scheduler's admission
 * gate sends: schema, every law and every dimension) `runs` times after two
 * warm-up runs and returns the median in milliseconds. `make bench` reports
 * it as `validate_1000_ms` (target: under 50).
 */
export async function benchValidate1000(runs = 7): Promise<number> {
  const pipeline = thousandStagePipeline();
  return medianMs(runs, () => validatePipeline({ pipeline }));
}

/**
 * The same from YAML text (`stagemesh validate FILE`): adds parsing the
 * 290 KB document, which the YAML library dominates. Reported apart
 * because no run pays it on the hot path.
 */
export async function benchValidateDocument1000(runs = 5): Promise<number> {
  const document = thousandStageDocument();
  return medianMs(runs, () => validatePipeline({ document }));
}
