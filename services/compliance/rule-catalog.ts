import { Severity } from '../common/proto.js';

/** The five UCL laws: hard rules, each broken by any ERROR finding of one of its rules. */
export const LAWS = [
  { id: 'UCL1', name: 'Verifiability' },
  { id: 'UCL2', name: 'Precedence' },
  { id: 'UCL3', name: 'Provenance' },
  { id: 'UCL4', name: 'Reproducibility' },
  { id: 'UCL5', name: 'Integrity' },
] as const;
export type LawId = (typeof LAWS)[number]['id'];

/**
 * The thirteen COF dimensions, each scored 0..1. `weight` is the default
 * weight in the overall score: dimensions that decide whether a run works at
 * all (graph shape, placement, timeouts, evidence) weigh 2, documentation and
 * hygiene 1, integration points 0.5.
 */
export const DIMENSIONS = [
  { id: 'COF01', name: 'Motivational', weight: 1 },
  { id: 'COF02', name: 'Relational', weight: 2 },
  { id: 'COF03', name: 'Situational', weight: 1 },
  { id: 'COF04', name: 'Resource', weight: 1 },
  { id: 'COF05', name: 'Narrative', weight: 1 },
  { id: 'COF06', name: 'Recursive', weight: 1 },
  { id: 'COF07', name: 'Computational', weight: 2 },
  { id: 'COF08', name: 'Emergent', weight: 1 },
  { id: 'COF09', name: 'Temporal', weight: 2 },
  { id: 'COF10', name: 'Spatial', weight: 2 },
  { id: 'COF11', name: 'Holistic', weight: 1 },
  { id: 'COF12', name: 'Validation', weight: 2 },
  { id: 'COF13', name: 'Integration', weight: 0.5 },
] as const;
export type DimensionId = (typeof DIMENSIONS)[number]['id'];

/** A built-in rule: its stable id, the law or dimension it belongs to, its default severity and what it checks. */
export interface RuleInfo {
  id: string;
  /** The law (UCLn) or dimension (COFnn) the rule belongs to. */
  group: LawId | DimensionId;
  severity: Severity;
  summary: string;
}

const E = Severity.SEVERITY_ERROR;
const W = Severity.SEVERITY_WARNING;
const I = Severity.SEVERITY_INFO;

const rule = (id: string, severity: Severity, summary: string): RuleInfo => ({ id, group: id.slice(0, id.indexOf('-')) as LawId | DimensionId, severity, summary });

/** Every built-in rule, by id. Custom rules of a policy come on top. */
export const RULES: ReadonlyMap<string, RuleInfo> = new Map(
  [
    rule('UCL1-syntax', E, 'the definition is YAML or JSON and a mapping'),
    rule('UCL1-schema', E, 'the definition matches the pipeline schema: known keys, types, required fields per framework'),
    rule('UCL1-masked-exit', E, 'a shell command does not hide its own exit status (|| true, ; exit 0)'),
    rule('UCL1-http-expect', W, 'an http stage says which status counts as success'),
    rule('UCL2-duplicate-id', E, 'stage ids are unique'),
    rule('UCL2-dangling-need', E, 'every need names a stage of the pipeline'),
    rule('UCL2-cycle', E, 'needs form no cycle'),
    rule('UCL2-never-runs', E, 'an on_failure stage needs at least one stage, or it can never run'),
    rule('UCL2-duplicate-need', W, 'a stage lists each need once'),
    rule('UCL3-owner', W, 'the pipeline names its owner'),
    rule('UCL3-version', W, 'the pipeline carries a version'),
    rule('UCL3-source', W, 'the pipeline says where its definition lives'),
    rule('UCL3-orphan-stage', W, 'in a pipeline of several stages, every stage needs or is needed by another'),
    rule('UCL4-unpinned', E, 'images and packages are pinned: no "latest"'),
    rule('UCL4-unbounded-wait', E, 'a wait-event stage has a timeout'),
    rule('UCL4-undeclared-env', W, 'variables a command reads are declared in run.env'),
    rule('UCL5-size', E, 'the definition is at most 1 MiB'),
    rule('UCL5-secret', E, 'no plain-text secret in commands, env, URLs or headers'),
    rule('UCL5-bidi', E, 'no bidirectional control characters (Trojan Source)'),
    rule('UCL5-invisible', E, 'no invisible characters (zero-width, BOM, soft hyphen)'),
    rule('UCL5-non-nfc', W, 'text is in Unicode normal form C'),
    rule('UCL5-limits', E, 'the pipeline stays within the policy limits'),
    rule('UCL1-audit-missing-output', E, 'at run time: a stage that succeeded wrote every output it declared'),
    rule('UCL1-audit-missing-artifact', E, 'at run time: a stage that succeeded produced the artifacts it declared'),
    rule('UCL1-audit-missing-report', E, 'at run time: a test stage that succeeded ran at least one test'),
    rule('UCL4-audit-timeout-exceeded', E, 'at run time: no attempt ran past its timeout'),
    rule('COF01-description', W, 'the pipeline says what it is for'),
    rule('COF02-redundant-need', I, 'a need is not already implied by another need'),
    rule('COF03-labels', I, 'the pipeline carries labels'),
    rule('COF03-environment', I, 'a process stage declares its environment (run.env or run.cwd)'),
    rule('COF04-resources', I, 'a process stage declares resource hints'),
    rule('COF05-stage-description', I, 'a stage says what it does'),
    rule('COF06-retry', I, 'a stage that can fail transiently declares a retry policy'),
    rule('COF07-depth', W, 'the longest chain of needs is within bounds'),
    rule('COF07-width', W, 'the widest level of the graph is within bounds'),
    rule('COF07-fan-out', W, 'no stage is needed by too many stages'),
    rule('COF07-fan-in', W, 'no stage needs too many stages'),
    rule('COF08-failure-handling', I, 'the pipeline handles failure (an on_failure or always stage)'),
    rule('COF09-timeout', I, 'a stage that can hang has a timeout (its own or defaults.timeout)'),
    rule('COF10-framework-unavailable', W, 'a worker of the cluster offers the stage framework'),
    rule('COF11-unused-output', I, 'a declared output is read by a later stage'),
    rule('COF12-evidence', I, 'a stage declares evidence: test report, expected status, outputs or artifacts'),
    rule('COF13-integration', I, 'the pipeline declares an event or notification (wait-event, or an http notification)'),
  ].map((r) => [r.id, r]),
);

/** The group (law or dimension) of a rule id: its prefix (custom rules are named `UCLn-custom-<name>`). */
export function ruleGroup(ruleId: string): string {
  return RULES.get(ruleId)?.group ?? ruleId.slice(0, Math.max(0, ruleId.indexOf('-')));
}
