import type { Pipeline } from '../common/proto.js';

/**
 * One string of a pipeline, with where it stands. The field path is built
 * only when asked for (a finding, a custom rule): a 1,000-stage pipeline has
 * some 10,000 strings and almost none of them needs its path.
 */
export class TextField {
  constructor(
    /** Path of the map, list or object holding the string: `stages[2].run.env`. */
    readonly parentPath: string,
    /** The key (`TOKEN`) or list index under the parent, or '' when the parent path is the field's own. */
    readonly leaf: string | number,
    /** The stage the string belongs to ('' for pipeline-level fields). */
    readonly stageId: string,
    readonly text: string,
    /** True for free-form keys (http header names), scanned for Unicode tricks but not for secrets. */
    readonly identifier: boolean,
    /** The key under which the string stands (`TOKEN` for `run.env.TOKEN`), '' in lists. */
    readonly key: string,
    /** True for descriptions, where only unmistakable secrets count. */
    readonly prose = false,
  ) {}

  /** Path users read: `stages[2].run.env.TOKEN`. */
  get fieldPath(): string {
    if (this.leaf === '') return this.parentPath;
    if (typeof this.leaf === 'number') return `${this.parentPath}[${this.leaf}]`;
    return this.parentPath ? `${this.parentPath}.${this.leaf}` : this.leaf;
  }
}

type Sink = TextField[];

// Keys of labels, inputs, resources, env, match and matrix, stage ids and
// output names are held to ASCII patterns by the pipeline schema before any
// rule runs, so only their values are listed; the keys of http `headers`
// are free text and are listed too.

function mapFields(out: Sink, map: Readonly<Record<string, string>>, path: string, stageId: string): void {
  for (const key in map) out.push(new TextField(path, key, stageId, map[key]!, false, key));
}

/** The strings under `value`, which stands at `leaf` of `parentPath`; nested containers get their own path. */
function deepFields(out: Sink, value: unknown, parentPath: string, leaf: string | number, stageId: string, freeKeys = false): void {
  if (typeof value === 'string') {
    out.push(new TextField(parentPath, leaf, stageId, value, false, typeof leaf === 'string' ? leaf : ''));
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const path = new TextField(parentPath, leaf, stageId, '', false, '').fieldPath;
  if (Array.isArray(value)) for (let i = 0; i < value.length; i++) deepFields(out, value[i], path, i, stageId);
  else {
    for (const k in value) {
      if (freeKeys) out.push(new TextField(path, k, stageId, k, true, ''));
      deepFields(out, (value as Record<string, unknown>)[k], path, k, stageId, k === 'headers');
    }
  }
}

/**
 * Every free-text string a pipeline carries, with its field path: metadata,
 * needs, label, input and resource values, artifacts, and each string inside
 * `run` and `matrix` (header names included). Integrity rules scan these. Built with plain
 * loops: a 1,000-stage pipeline has some 16,000 strings.
 */
export function pipelineText(pipeline: Pipeline): TextField[] {
  const out: Sink = [];
  const top = (name: string, text: string, prose = false) => out.push(new TextField('', name, '', text, false, '', prose));
  top('name', pipeline.name);
  top('version', pipeline.version);
  top('description', pipeline.description, true);
  top('owner', pipeline.owner);
  top('source', pipeline.source);
  mapFields(out, pipeline.labels, 'labels', '');
  mapFields(out, pipeline.inputs, 'inputs', '');
  for (let index = 0; index < pipeline.stages.length; index++) {
    const stage = pipeline.stages[index]!;
    const path = `stages[${index}]`;
    const stageId = stage.id;
    if (stage.description) out.push(new TextField(path, 'description', stageId, stage.description, false, '', true));
    if (stage.needs.length) {
      const needs = `${path}.needs`;
      for (let i = 0; i < stage.needs.length; i++) out.push(new TextField(needs, i, stageId, stage.needs[i]!, true, ''));
    }
    const artifacts = stage.artifacts ?? [];
    for (let i = 0; i < artifacts.length; i++) out.push(new TextField(`${path}.artifacts`, i, stageId, artifacts[i]!, false, ''));
    if (Object.keys(stage.labels).length) mapFields(out, stage.labels, `${path}.labels`, stageId);
    if (Object.keys(stage.resources).length) mapFields(out, stage.resources, `${path}.resources`, stageId);
    if (stage.run) deepFields(out, stage.run, path, 'run', stageId);
    if (stage.matrix) deepFields(out, stage.matrix, path, 'matrix', stageId);
  }
  return out;
}
