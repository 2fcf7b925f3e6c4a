import type { Pipeline } from '../common/proto.js';

/** One string of a pipeline, with where it stands. */
export interface TextField {
  /** Path users read: `stages[2].run.env.TOKEN`; for a map key, the path of the key itself. */
  fieldPath: string;
  /** The stage the string belongs to ('' for pipeline-level fields). */
  stageId: string;
  text: string;
  /** True for identifiers (ids, names, keys), which must be plain and normalised. */
  identifier: boolean;
  /** The key under which the string stands (`TOKEN` for `run.env.TOKEN`), '' in lists. */
  key: string;
}

type Sink = TextField[];

// Keys of labels, inputs, resources, env, match and matrix, stage ids and
// output names are held to ASCII patterns by the pipeline schema before any
// rule runs, so only their values are listed; the keys of http `headers`
// are free text and are listed too.

function mapFields(out: Sink, map: Readonly<Record<string, string>>, path: string, stageId: string): void {
  for (const key in map) out.push({ fieldPath: `${path}.${key}`, stageId, text: map[key]!, identifier: false, key });
}

function deepFields(out: Sink, value: unknown, path: string, stageId: string, key: string, freeKeys = false): void {
  if (typeof value === 'string') out.push({ fieldPath: path, stageId, text: value, identifier: false, key });
  else if (Array.isArray(value)) for (let i = 0; i < value.length; i++) deepFields(out, value[i], `${path}[${i}]`, stageId, '');
  else if (value !== null && typeof value === 'object') {
    for (const k in value) {
      const fieldPath = `${path}.${k}`;
      if (freeKeys) out.push({ fieldPath, stageId, text: k, identifier: true, key: '' });
      deepFields(out, (value as Record<string, unknown>)[k], fieldPath, stageId, k, k === 'headers');
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
  const top = (fieldPath: string, text: string, identifier = false) => out.push({ fieldPath, stageId: '', text, identifier, key: '' });
  top('name', pipeline.name, true);
  top('version', pipeline.version, true);
  top('description', pipeline.description);
  top('owner', pipeline.owner);
  top('source', pipeline.source);
  mapFields(out, pipeline.labels, 'labels', '');
  mapFields(out, pipeline.inputs, 'inputs', '');
  for (let index = 0; index < pipeline.stages.length; index++) {
    const stage = pipeline.stages[index]!;
    const path = `stages[${index}]`;
    const stageId = stage.id;
    if (stage.description) out.push({ fieldPath: `${path}.description`, stageId, text: stage.description, identifier: false, key: '' });
    for (let i = 0; i < stage.needs.length; i++) out.push({ fieldPath: `${path}.needs[${i}]`, stageId, text: stage.needs[i]!, identifier: true, key: '' });
    const artifacts = stage.artifacts ?? [];
    for (let i = 0; i < artifacts.length; i++) out.push({ fieldPath: `${path}.artifacts[${i}]`, stageId, text: artifacts[i]!, identifier: false, key: '' });
    mapFields(out, stage.labels, `${path}.labels`, stageId);
    mapFields(out, stage.resources, `${path}.resources`, stageId);
    if (stage.run) deepFields(out, stage.run, `${path}.run`, stageId, '');
    if (stage.matrix) deepFields(out, stage.matrix, `${path}.matrix`, stageId, '');
  }
  return out;
}
