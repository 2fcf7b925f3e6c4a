import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseDocument } from 'yaml';
import { parseDurationMs } from './duration.js';
import { InvalidArgumentError } from './errors.js';
import { packageRoot } from './paths.js';
import { Concurrency, Pipeline, type RetryPolicy, type Stage } from './proto.js';

/** Largest pipeline definition accepted, in bytes of its YAML/JSON text. */
export const MAX_DOCUMENT_BYTES = 1024 * 1024;

/** A problem found while reading a pipeline document, with the rule it breaks. */
export interface DocumentProblem {
  /** Stable rule id: `UCL1-syntax` (not YAML/JSON), `UCL1-schema` (shape), `UCL5-size`. */
  ruleId: string;
  /** Path of the offending field: `stages[1].run.command`; `document` for the whole text. */
  fieldPath: string;
  message: string;
  fix: string;
}

/** The outcome of reading a document: the pipeline, or the problems that stop it. */
export type ReadResult = { pipeline: Pipeline; problems: [] } | { pipeline?: undefined; problems: DocumentProblem[] };

let validateSchema: ValidateFunction | undefined;

/** The JSON Schema of the pipeline format (docs/schema/pipeline.schema.json), compiled once. */
function schemaValidator(): ValidateFunction {
  if (!validateSchema) {
    const schema = JSON.parse(readFileSync(join(packageRoot(), 'docs', 'schema', 'pipeline.schema.json'), 'utf8'));
    validateSchema = new Ajv({ allErrors: true, strict: false }).compile(schema);
  }
  return validateSchema;
}

/** Turns a JSON pointer (`/stages/1/run`) into the path users read (`stages[1].run`). */
export function pointerToPath(pointer: string, extra?: string): string {
  const parts = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  return parts.reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path ? `${path}.${part}` : part), '');
}

function schemaProblem(error: ErrorObject): DocumentProblem | undefined {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'if':
      return undefined; // reported by the failing `then` branch itself
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      return { ruleId: 'UCL1-schema', fieldPath: pointerToPath(error.instancePath, key), message: `unknown key "${key}"`, fix: 'remove the key or correct its spelling (see docs/pipeline-format.md)' };
    }
    case 'required': {
      const key = String(params.missingProperty);
      return { ruleId: 'UCL1-schema', fieldPath: pointerToPath(error.instancePath, key), message: `required field "${key}" is missing`, fix: `add "${key}"` };
    }
    case 'enum':
      return {
        ruleId: 'UCL1-schema',
        fieldPath: pointerToPath(error.instancePath),
        message: `must be one of ${(params.allowedValues as unknown[]).join(', ')}`,
        fix: 'use one of the listed values',
      };
    default:
      return { ruleId: 'UCL1-schema', fieldPath: pointerToPath(error.instancePath) || 'document', message: error.message ?? 'is invalid', fix: 'see docs/pipeline-format.md' };
  }
}

/** Checks a plain object against the pipeline schema; returns the problems (empty when valid). */
export function checkSchema(data: unknown): DocumentProblem[] {
  const validate = schemaValidator();
  if (validate(data)) return [];
  const problems = (validate.errors ?? []).map(schemaProblem).filter((p): p is DocumentProblem => p !== undefined);
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.fieldPath}\u0000${p.message}`;
    return seen.has(key) ? false : (seen.add(key), true);
  });
}

/** Durations the schema accepts by shape but a timer cannot wait for. */
function checkDurations(data: unknown): DocumentProblem[] {
  const problems: DocumentProblem[] = [];
  const visit = (value: unknown, path: string, key: string) => {
    if (typeof value === 'string' && DURATION_KEYS.has(key) && DURATION_SHAPE.test(value) && parseDurationMs(value) === undefined) {
      problems.push({ ruleId: 'UCL1-schema', fieldPath: path, message: `${value} is longer than the longest supported duration (596h)`, fix: 'use a shorter duration' });
    } else if (Array.isArray(value)) value.forEach((v, i) => visit(v, `${path}[${i}]`, key));
    else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) visit(v, path ? `${path}.${k}` : k, k);
  };
  visit(data, '', '');
  return problems;
}

/** Keys whose values are durations in the pipeline format. */
const DURATION_KEYS = new Set(['timeout', 'backoff', 'max_backoff', 'duration']);
const DURATION_SHAPE = /^(\d+(\.\d+)?(ms|s|m|h))+$/;

/** Parses YAML or JSON text into plain data, or returns the syntax and size problems. */
export function parseDocumentText(text: string): { data?: unknown; problems: DocumentProblem[] } {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_DOCUMENT_BYTES) {
    return {
      problems: [{ ruleId: 'UCL5-size', fieldPath: 'document', message: `definition is ${bytes} bytes, over the limit of ${MAX_DOCUMENT_BYTES}`, fix: 'split the pipeline or move data out of it' }],
    };
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    return {
      problems: doc.errors.map((e) => ({
        ruleId: 'UCL1-syntax',
        fieldPath: 'document',
        message: `${e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}: ` : ''}${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
        fix: 'fix the YAML/JSON syntax',
      })),
    };
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // An alias without its anchor, or too many aliases, surfaces only here.
    return { problems: [{ ruleId: 'UCL1-syntax', fieldPath: 'document', message: (err as Error).message, fix: 'fix the YAML aliases and anchors' }] };
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return { problems: [{ ruleId: 'UCL1-syntax', fieldPath: 'document', message: 'a pipeline must be a mapping with name and stages', fix: 'start the file with "name:" and "stages:"' }] };
  }
  return { data, problems: [] };
}

const str = (v: unknown) => (v === undefined || v === null ? '' : String(v));
const strMap = (v: unknown): Record<string, string> =>
  Object.fromEntries(Object.entries((v as Record<string, unknown>) ?? {}).map(([k, x]) => [k, String(x)]));

function toRetry(v: unknown): RetryPolicy | undefined {
  if (!v) return undefined;
  const r = v as Record<string, unknown>;
  return { maxAttempts: Number(r.max_attempts ?? 0), backoff: str(r.backoff), maxBackoff: str(r.max_backoff) };
}

/** Converts schema-valid plain data (the YAML shape) to the wire message. */
export function dataToPipeline(data: Record<string, unknown>): Pipeline {
  const defaults = data.defaults as Record<string, unknown> | undefined;
  return {
    name: str(data.name),
    version: str(data.version),
    description: str(data.description),
    owner: str(data.owner),
    source: str(data.source),
    labels: strMap(data.labels),
    inputs: strMap(data.inputs),
    defaults: defaults ? { timeout: str(defaults.timeout), retry: toRetry(defaults.retry) } : undefined,
    concurrency: data.concurrency ? Concurrency.fromPartial(data.concurrency as Concurrency) : undefined,
    triggers: ((data.triggers as Record<string, unknown>[]) ?? []).map((t) => ({ event: str(t.event), match: strMap(t.match) })),
    stages: ((data.stages as Record<string, unknown>[]) ?? []).map(
      (s): Stage => ({
        id: str(s.id),
        framework: str(s.framework),
        run: (s.run as Record<string, unknown>) ?? undefined,
        needs: ((s.needs as unknown[]) ?? []).map(String),
        timeout: str(s.timeout),
        retry: toRetry(s.retry),
        when: str(s.when),
        outputs: ((s.outputs as unknown[]) ?? []).map(String),
        matrix: (s.matrix as Record<string, unknown>) ?? undefined,
        description: str(s.description),
        resources: strMap(s.resources),
        labels: strMap(s.labels),
        artifacts: ((s.artifacts as unknown[]) ?? []).map(String),
      }),
    ),
  };
}

function fromRetry(r: RetryPolicy | undefined): Record<string, unknown> | undefined {
  if (!r) return undefined;
  return compact({ max_attempts: r.maxAttempts || undefined, backoff: r.backoff || undefined, max_backoff: r.maxBackoff || undefined });
}

function compact(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(o).filter(([, v]) => v !== undefined && v !== '' && !(Array.isArray(v) && v.length === 0) && !(typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0)),
  );
}

/** Converts a wire message back to the YAML shape, leaving out unset (empty) fields. */
export function pipelineToData(p: Pipeline): Record<string, unknown> {
  return compact({
    name: p.name,
    version: p.version,
    description: p.description,
    owner: p.owner,
    source: p.source,
    labels: p.labels,
    inputs: p.inputs,
    defaults: p.defaults ? compact({ timeout: p.defaults.timeout, retry: fromRetry(p.defaults.retry) }) : undefined,
    concurrency: p.concurrency ? compact({ max: p.concurrency.max || undefined, frameworks: p.concurrency.frameworks }) : undefined,
    triggers: p.triggers?.length ? p.triggers.map((t) => compact({ event: t.event, match: t.match })) : undefined,
    stages: p.stages.map((s) =>
      compact({
        id: s.id,
        framework: s.framework,
        description: s.description,
        needs: s.needs,
        timeout: s.timeout,
        retry: fromRetry(s.retry),
        when: s.when,
        outputs: s.outputs,
        resources: s.resources,
        labels: s.labels,
        artifacts: s.artifacts,
        run: s.run,
        matrix: s.matrix && Object.keys(s.matrix).length ? s.matrix : undefined,
      }),
    ),
  });
}

/**
 * Reads a pipeline from YAML/JSON text or a wire message, checking size,
 * syntax and schema. Structural rules (cycles, dangling needs) are checked by
 * the compliance rules on the result.
 */
export function readPipeline(input: { document?: string; pipeline?: Pipeline }): ReadResult {
  let data: unknown;
  if (input.document !== undefined) {
    const parsed = parseDocumentText(input.document);
    if (parsed.problems.length > 0) return { problems: parsed.problems };
    data = parsed.data;
  } else if (input.pipeline) {
    const bytes = Pipeline.encode(input.pipeline).finish().length;
    if (bytes > MAX_DOCUMENT_BYTES) {
      return { problems: [{ ruleId: 'UCL5-size', fieldPath: 'pipeline', message: `definition is ${bytes} bytes, over the limit of ${MAX_DOCUMENT_BYTES}`, fix: 'split the pipeline or move data out of it' }] };
    }
    data = pipelineToData(input.pipeline);
  } else {
    return { problems: [{ ruleId: 'UCL1-schema', fieldPath: 'pipeline', message: 'a pipeline (message or document) is required', fix: 'send pipeline or document' }] };
  }
  const problems = [...checkSchema(data), ...checkDurations(data)];
  if (problems.length > 0) return { problems };
  return { pipeline: dataToPipeline(data as Record<string, unknown>), problems: [] };
}

/** Like readPipeline, but throws InvalidArgumentError naming the first problem's field path. */
export function readPipelineOrThrow(input: { document?: string; pipeline?: Pipeline }, pathPrefix = ''): Pipeline {
  const result = readPipeline(input);
  if (result.pipeline) return result.pipeline;
  throw problemsToError(result.problems, pathPrefix);
}

/** One INVALID_ARGUMENT error for a list of problems: the first one's path, all messages. */
export function problemsToError(problems: readonly { fieldPath: string; message: string }[], pathPrefix = ''): InvalidArgumentError {
  const [first] = problems;
  const prefix = (path: string) => (pathPrefix && path !== 'document' ? `${pathPrefix}.${path}` : path);
  const rest = problems.slice(1, 5).map((p) => `; ${prefix(p.fieldPath)}: ${p.message}`).join('');
  const more = problems.length > 5 ? ` (and ${problems.length - 5} more)` : '';
  return new InvalidArgumentError(`${first?.message ?? 'invalid pipeline'}${rest}${more}`, prefix(first?.fieldPath ?? 'pipeline'));
}
