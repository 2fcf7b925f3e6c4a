import type { Pipeline } from '../common/proto.js';
import type { GraphShape } from './graph-shape.js';
import type { ResolvedPolicy } from './policy.js';
import type { TextField } from './pipeline-text.js';

/** A finding before the policy decides its severity. */
export interface RawFinding {
  ruleId: string;
  fieldPath: string;
  message: string;
  fix: string;
  stageId: string;
}

/** What every check of one validation shares. */
export interface CheckContext {
  pipeline: Pipeline;
  policy: ResolvedPolicy;
  /** Frameworks some worker of the cluster offers. */
  availableFrameworks: ReadonlySet<string>;
  /** Every string of the pipeline with its path, read once. */
  text: readonly TextField[];
  /** The UCL2 findings of the graph structure (duplicate ids, dangling needs, cycle), computed once. */
  structural: readonly RawFinding[];
  /** The graph's shape, or undefined when UCL2 is broken (cycle, duplicate id, dangling need). */
  shape: GraphShape | undefined;
  emit(finding: RawFinding): void;
}

/** Frameworks that run a process on the worker (they can hang, use resources and read an environment). */
export const PROCESS_FRAMEWORKS: ReadonlySet<string> = new Set(['shell', 'node-test', 'mocha', 'pytest']);
/** Frameworks whose report is parsed into test counts. */
export const TEST_FRAMEWORKS: ReadonlySet<string> = new Set(['node-test', 'mocha', 'pytest']);
/** Every framework of the pipeline format. */
export const KNOWN_FRAMEWORKS: readonly string[] = ['shell', 'node-test', 'mocha', 'pytest', 'http', 'wait-event', 'noop', 'sleep'];

/** Expressions that read a stage output: `${{ stages.build.outputs.version }}`. */
export const OUTPUT_EXPRESSION = /\$\{\{\s*stages\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_.-]+)\s*\}\}/g;

/** The run spec of a stage as a plain record (empty when unset). */
export const runOf = (stage: { run?: { [key: string]: unknown } | undefined }): Record<string, unknown> => (stage.run ?? {}) as Record<string, unknown>;

/**
 * Calls `fn` with each match of a global regex in `text`. Unlike
 * String.prototype.matchAll it does not copy the regex on every call, which
 * shows on pipelines of thousands of stages.
 */
export function forEachMatch(regex: RegExp, text: string, fn: (match: RegExpExecArray) => void): void {
  regex.lastIndex = 0;
  for (let m = regex.exec(text); m !== null; m = regex.exec(text)) {
    fn(m);
    if (m[0] === '') regex.lastIndex++;
  }
}
