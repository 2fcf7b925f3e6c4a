import type { Pipeline, Stage } from '../common/proto.js';
import { resolveExpressions } from './expressions.js';

/** Largest number of stages one matrix may expand into. */
export const MAX_MATRIX_STAGES = 1024;

/** Every combination of the matrix values, keys in declaration order. */
export function matrixCombinations(matrix: Record<string, unknown>): Record<string, string>[] {
  let combinations: Record<string, string>[] = [{}];
  for (const [key, values] of Object.entries(matrix)) {
    const list = (values as unknown[]).map(String);
    combinations = combinations.flatMap((c) => list.map((v) => ({ ...c, [key]: v })));
  }
  return combinations;
}

/** The id of one expansion: `test[3.11,linux]`, readable in listings and unique in the run. */
export function expandedStageId(id: string, values: Record<string, string>): string {
  return `${id}[${Object.values(values).join(',')}]`;
}

/**
 * Expands every `matrix` stage into one stage per combination, as GitHub
 * Actions' matrix and Argo's withItems do: each expansion is its own stage
 * (visible, retried on its own), `${{ matrix.KEY }}` in its run spec becomes
 * its value, and a stage that needs the matrix stage needs every expansion.
 */
export function expandMatrix(pipeline: Pipeline): Pipeline {
  if (!pipeline.stages.some((s) => s.matrix && Object.keys(s.matrix).length > 0)) return pipeline;
  const expansions = new Map<string, string[]>();
  const stages: Stage[] = [];
  for (const stage of pipeline.stages) {
    if (!stage.matrix || Object.keys(stage.matrix).length === 0) {
      stages.push(stage);
      continue;
    }
    const ids: string[] = [];
    for (const values of matrixCombinations(stage.matrix)) {
      const id = expandedStageId(stage.id, values);
      ids.push(id);
      const run = resolveExpressions(stage.run ?? {}, { inputs: {}, outputs: new Map(), matrix: values, keepUnknown: true });
      const labels = { ...stage.labels, ...Object.fromEntries(Object.entries(values).map(([k, v]) => [`matrix.${k}`, v])) };
      stages.push({ ...stage, id, run, labels, matrix: undefined });
    }
    expansions.set(stage.id, ids);
  }
  for (const stage of stages) stage.needs = stage.needs.flatMap((need) => expansions.get(need) ?? [need]);
  return { ...pipeline, stages };
}
