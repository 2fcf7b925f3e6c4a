import { danglingNeeds, duplicateStageIds, findCycle } from '../common/dag.js';
import { readPipeline } from '../common/pipeline-document.js';
import { Severity, type Finding, type LawResult, type Pipeline, type Report } from '../common/proto.js';

/** The five UCL laws: hard rules, each broken by any ERROR finding whose rule id starts with its id. */
export const LAWS = [
  { id: 'UCL1', name: 'Verifiability' },
  { id: 'UCL2', name: 'Precedence' },
  { id: 'UCL3', name: 'Provenance' },
  { id: 'UCL4', name: 'Reproducibility' },
  { id: 'UCL5', name: 'Integrity' },
] as const;

/** The admission threshold of the default policy. */
export const DEFAULT_THRESHOLD = 0.9;

function finding(ruleId: string, fieldPath: string, message: string, fix: string, stageId = ''): Finding {
  return { ruleId, severity: Severity.SEVERITY_ERROR, stageId, fieldPath, message, fix, runId: '' };
}

/** UCL2 (Precedence): unique stage ids, no dangling `needs`, no cycle. */
export function precedenceFindings(pipeline: Pipeline): Finding[] {
  const findings: Finding[] = [];
  for (const { index, id } of duplicateStageIds(pipeline.stages)) {
    findings.push(finding('UCL2-duplicate-id', `stages[${index}].id`, `stage id "${id}" is used more than once`, 'give every stage its own id', id));
  }
  for (const { index, needIndex, need } of danglingNeeds(pipeline.stages)) {
    const id = pipeline.stages[index]!.id;
    findings.push(finding('UCL2-dangling-need', `stages[${index}].needs[${needIndex}]`, `stage "${id}" needs "${need}", which is not a stage of this pipeline`, `remove "${need}" from needs or add a stage with that id`, id));
  }
  const cycle = findCycle(pipeline.stages);
  if (cycle) {
    const index = pipeline.stages.findIndex((s) => s.id === cycle[0]);
    findings.push(finding('UCL2-cycle', `stages[${index}].needs`, `dependency cycle: ${cycle.join(' → ')}`, `break the cycle by removing one of the needs between ${[...new Set(cycle)].join(', ')}`, cycle[0]));
  }
  return findings;
}

/**
 * Validates a pipeline (message or YAML/JSON text) and scores it. In this
 * release the score is the share of laws that hold; the COF dimensions are
 * listed in docs/compliance.md and scored by a later release.
 */
export function validatePipeline(input: { document?: string; pipeline?: Pipeline }, threshold = DEFAULT_THRESHOLD): Report {
  const read = readPipeline(input);
  const findings: Finding[] = read.pipeline
    ? precedenceFindings(read.pipeline)
    : read.problems.map((p) => finding(p.ruleId, p.fieldPath, p.message, p.fix));
  const laws: LawResult[] = LAWS.map((law) => ({
    id: law.id,
    name: law.name,
    passed: !findings.some((f) => f.severity === Severity.SEVERITY_ERROR && f.ruleId.startsWith(`${law.id}-`)),
  }));
  const score = laws.filter((l) => l.passed).length / laws.length;
  return { score, threshold, passed: laws.every((l) => l.passed) && score >= threshold, laws, dimensions: [], findings };
}
