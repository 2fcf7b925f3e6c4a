/** `${{ inputs.name }}` or `${{ stages.<id>.outputs.<name> }}`, with optional spaces. */
const EXPRESSION = /\$\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g;

/** What expressions in a stage's run spec can refer to. */
export interface ExpressionContext {
  inputs: Readonly<Record<string, string>>;
  outputs: ReadonlyMap<string, Readonly<Record<string, string>>>;
}

function lookup(path: string, context: ExpressionContext): string {
  const parts = path.split('.');
  if (parts[0] === 'inputs' && parts.length === 2) return context.inputs[parts[1]!] ?? '';
  if (parts[0] === 'stages' && parts[2] === 'outputs' && parts.length === 4) return context.outputs.get(parts[1]!)?.[parts[3]!] ?? '';
  return '';
}

/**
 * Replaces every expression in the strings of `value` (deeply) with the run
 * input or stage output it names; an unknown name resolves to the empty string.
 */
export function resolveExpressions<T>(value: T, context: ExpressionContext): T {
  if (typeof value === 'string') return value.replace(EXPRESSION, (_, path: string) => lookup(path, context)) as T;
  if (Array.isArray(value)) return value.map((v) => resolveExpressions(v, context)) as T;
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveExpressions(v, context)])) as T;
  }
  return value;
}
