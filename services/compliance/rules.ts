import { readPipeline, type ReadResult } from '../common/pipeline-document.js';
import { Severity, type DimensionScore, type Finding, type LawResult, type Pipeline, type Report } from '../common/proto.js';
import { KNOWN_FRAMEWORKS, type CheckContext, type RawFinding } from './check-context.js';
import { customRuleFindings } from './custom-rules.js';
import { DIMENSION_SCORERS } from './dimensions.js';
import { graphShape } from './graph-shape.js';
import { integrityRules, precedenceFindings, precedenceRules, provenanceRules, reproducibilityRules, verifiabilityRules } from './law-rules.js';
import { pipelineText } from './pipeline-text.js';
import { DEFAULT_POLICY, Enforcement, severityUnder, type ResolvedPolicy } from './policy.js';
import { DIMENSIONS, LAWS, RULES, ruleGroup } from './rule-catalog.js';

/** Options of one validation. */
export interface ValidateOptions {
  /** The policy to score against. @default DEFAULT_POLICY */
  policy?: ResolvedPolicy;
  /**
   * Frameworks some worker of the cluster offers (COF10 Spatial). A pure
   * validation cannot see the cluster; the service passes what the
   * coordinator reports. @default every framework of the pipeline format
   */
  availableFrameworks?: readonly string[];
}

/** Share of its law's part of the score that one WARNING finding of the law costs. */
export const LAW_WARNING_COST = 0.1;

/** Rounds a score to four decimals, so equal pipelines print equal scores. */
const round = (x: number) => Math.round(x * 10_000) / 10_000;

function toFinding(raw: RawFinding, severity: Severity): Finding {
  return { ...raw, severity, runId: '' };
}

/** Builds the report from findings and dimension scores under a policy. */
function buildReport(findings: Finding[], dimensionScores: ReadonlyMap<string, number>, policy: ResolvedPolicy): Report {
  const broken = new Set(findings.filter((f) => f.severity === Severity.SEVERITY_ERROR).map((f) => ruleGroup(f.ruleId)));
  const laws: LawResult[] = LAWS.map((law) => ({ id: law.id, name: law.name, passed: !broken.has(law.id) }));
  const dimensions: DimensionScore[] = DIMENSIONS.map((d) => ({ id: d.id, name: d.name, score: round(dimensionScores.get(d.id) ?? 0), weight: policy.weights[d.id] }));
  const totalWeight = dimensions.reduce((sum, d) => sum + d.weight, 0);
  const dimensionMean = dimensions.reduce((sum, d) => sum + d.weight * d.score, 0) / totalWeight;
  // A broken law takes its fifth of the score; each warning of a law that holds takes a tenth of that fifth.
  const warnings = new Map<string, number>();
  for (const f of findings) if (f.severity === Severity.SEVERITY_WARNING) warnings.set(ruleGroup(f.ruleId), (warnings.get(ruleGroup(f.ruleId)) ?? 0) + 1);
  const lawShare = laws.reduce((sum, l) => sum + (l.passed ? Math.max(0, 1 - LAW_WARNING_COST * (warnings.get(l.id) ?? 0)) : 0), 0) / laws.length;
  const score = round(dimensionMean * lawShare);
  const lawsHold = laws.every((l) => l.passed);
  const passed = lawsHold && (policy.enforcement === Enforcement.AUDIT || score >= policy.threshold);
  return { score, threshold: policy.threshold, passed, laws, dimensions, findings, enforcement: policy.enforcement };
}

/**
 * readPipeline, with any exception of the YAML library turned into a
 * UCL1-syntax problem: an alias whose anchor comes later (`*a`) throws while
 * the document is converted, and a validator reports, it does not crash.
 */
function readSafely(input: { document?: string; pipeline?: Pipeline }): ReadResult {
  try {
    const read = readPipeline(input);
    // A schema error on the document root (an unknown empty key) has no path of its own.
    return read.pipeline ? read : { problems: read.problems.map((p) => (p.fieldPath ? p : { ...p, fieldPath: 'document' })) };
  } catch (err) {
    return { problems: [{ ruleId: 'UCL1-syntax', fieldPath: 'document', message: (err as Error).message.split('\n')[0]!, fix: 'fix the YAML/JSON syntax (define an anchor before its alias)' }] };
  }
}

/**
 * Validates a pipeline (message or YAML/JSON text) against a policy: every
 * UCL law as hard rules (an ERROR finding breaks its law), every COF
 * dimension scored 0..1. The score is the weighted mean of the dimensions
 * times the mean of the law scores (0 for a broken law, otherwise 1 less
 * LAW_WARNING_COST per warning of the law); the pipeline passes when no law
 * is broken and (unless the policy only audits) the score reaches the
 * threshold. Never throws for bad input: problems become findings.
 */
export function validatePipeline(input: { document?: string; pipeline?: Pipeline }, options: ValidateOptions = {}): Report {
  const policy = options.policy ?? DEFAULT_POLICY;
  const read = readSafely(input);
  const findings: Finding[] = [];
  const keep = (raw: RawFinding) => {
    const severity = severityUnder(policy, raw.ruleId, RULES.get(raw.ruleId)?.severity ?? Severity.SEVERITY_ERROR);
    if (severity !== 'off') findings.push(toFinding(raw, severity));
  };
  if (!read.pipeline) {
    for (const p of read.problems) keep({ ruleId: p.ruleId, fieldPath: p.fieldPath, message: p.message, fix: p.fix, stageId: '' });
    return buildReport(findings, new Map(), policy);
  }
  const pipeline = read.pipeline;
  const structural = precedenceFindings(pipeline);
  const ctx: CheckContext = {
    pipeline,
    policy,
    availableFrameworks: new Set(options.availableFrameworks ?? KNOWN_FRAMEWORKS),
    text: pipelineText(pipeline),
    structural,
    shape: structural.length === 0 ? graphShape(pipeline.stages) : undefined,
    emit: keep,
  };
  verifiabilityRules(ctx);
  precedenceRules(ctx);
  provenanceRules(ctx);
  reproducibilityRules(ctx);
  integrityRules(ctx);
  for (const { finding, severity } of customRuleFindings(ctx)) findings.push(toFinding(finding, severity));
  const scores = new Map<string, number>();
  for (const d of DIMENSIONS) scores.set(d.id, DIMENSION_SCORERS[d.id](ctx));
  return buildReport(findings, scores, policy);
}
