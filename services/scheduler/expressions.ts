import type { DocumentProblem } from '../common/pipeline-document.js';
import type { Pipeline, Stage } from '../common/proto.js';

/** `${{ inputs.name }}`, `${{ stages.<id>.outputs.<name> }}` or `${{ matrix.<key> }}`, with optional spaces. */
const EXPRESSION = /\$\{\{\s*([^}]*?)\s*\}\}/g;

/** What expressions in a stage's run spec can refer to. */
export interface ExpressionContext {
  inputs: Readonly<Record<string, string>>;
  /** Outputs of a stage by id (a Map, or a view onto the run's stages). */
  outputs: { get(stageId: string): Readonly<Record<string, string>> | undefined };
  matrix?: Readonly<Record<string, string>>;
  /** Leave expressions of other namespaces untouched (used when expanding a matrix before the run). */
  keepUnknown?: boolean;
}

function lookup(path: string, context: ExpressionContext): string | undefined {
  const parts = path.split('.');
  if (parts[0] === 'inputs' && parts.length === 2) return context.keepUnknown ? undefined : (context.inputs[parts[1]!] ?? '');
  if (parts[0] === 'stages' && parts[2] === 'outputs' && parts.length === 4) return context.keepUnknown ? undefined : (context.outputs.get(parts[1]!)?.[parts[3]!] ?? '');
  if (parts[0] === 'matrix' && parts.length === 2 && context.matrix) return context.matrix[parts[1]!] ?? '';
  return context.keepUnknown ? undefined : '';
}

/**
 * Replaces every expression in the strings of `value` (deeply) with the run
 * input, stage output or matrix value it names. References are checked at
 * admission (checkExpressions); one that still does not resolve (an output
 * the stage did not write) becomes the empty string.
 */
export function resolveExpressions<T>(value: T, context: ExpressionContext): T {
  if (typeof value === 'string') return value.replace(EXPRESSION, (text, path: string) => lookup(path, context) ?? text) as T;
  if (Array.isArray(value)) return value.map((v) => resolveExpressions(v, context)) as T;
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveExpressions(v, context)])) as T;
  }
  return value;
}

/** Every string inside a value with its path below `path`. */
function* strings(value: unknown, path: string): Generator<[string, string]> {
  if (typeof value === 'string') yield [value, path];
  else if (Array.isArray(value)) for (const [i, v] of value.entries()) yield* strings(v, `${path}[${i}]`);
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) yield* strings(v, `${path}.${k}`);
}

/** Ids of every stage `stage` depends on, directly or not. */
function upstream(stage: Stage, byId: ReadonlyMap<string, Stage>): Set<string> {
  const seen = new Set<string>();
  const stack = [...stage.needs];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    stack.push(...(byId.get(id)?.needs ?? []));
  }
  return seen;
}

/**
 * Checks every expression of every run spec before a run exists: inputs the
 * pipeline declares, outputs an upstream stage declares, matrix keys of the
 * stage's own matrix. Returns one problem per bad reference, with its path.
 */
export function checkExpressions(pipeline: Pipeline): DocumentProblem[] {
  const byId = new Map(pipeline.stages.map((s) => [s.id, s]));
  const problems: DocumentProblem[] = [];
  pipeline.stages.forEach((stage, index) => {
    const before = upstream(stage, byId);
    for (const [text, fieldPath] of strings(stage.run ?? {}, `stages[${index}].run`)) {
      for (const [, path] of text.matchAll(EXPRESSION)) {
        const parts = path!.split('.');
        const problem = (message: string, fix: string) => problems.push({ ruleId: 'UCL1-expression', fieldPath, message, fix });
        if (parts[0] === 'inputs' && parts.length === 2) {
          if (!(parts[1]! in pipeline.inputs)) problem(`\${{ ${path} }} names an input the pipeline does not declare`, `declare "${parts[1]}" under inputs`);
        } else if (parts[0] === 'stages' && parts[2] === 'outputs' && parts.length === 4) {
          const source = byId.get(parts[1]!);
          if (!source) problem(`\${{ ${path} }} names no stage of the pipeline`, 'name a stage id');
          else if (!before.has(source.id)) problem(`\${{ ${path} }} reads stage "${source.id}", which does not run before "${stage.id}"`, `add "${source.id}" to needs`);
          else if (!source.outputs.includes(parts[3]!)) problem(`\${{ ${path} }}: stage "${source.id}" declares no output "${parts[3]}"`, `add "${parts[3]}" to the outputs of "${source.id}"`);
        } else if (parts[0] === 'matrix' && parts.length === 2) {
          if (!stage.matrix || !(parts[1]! in stage.matrix)) problem(`\${{ ${path} }}: stage "${stage.id}" has no matrix key "${parts[1]}"`, 'add the key to the stage matrix');
        } else {
          problem(`\${{ ${path} }} is not an expression stagemesh knows`, 'use inputs.NAME, stages.ID.outputs.NAME or matrix.KEY');
        }
      }
    }
  });
  return problems;
}
