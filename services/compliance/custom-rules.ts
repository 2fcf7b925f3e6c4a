import type { Severity } from '../common/proto.js';
import type { CheckContext, RawFinding } from './check-context.js';
import { PatternTarget, type CustomRule } from './policy.js';

/** The strings a custom pattern rule looks at: commands and arguments of process stages, or http URLs. */
function* targets(ctx: CheckContext, target: PatternTarget): Generator<{ fieldPath: string; stageId: string; text: string }> {
  for (const field of ctx.text) {
    if (field.identifier || !field.stageId) continue;
    const isUrl = /\.run\.url$/.test(field.fieldPath);
    if (target === PatternTarget.URLS ? isUrl : !isUrl && /\.run\.(?:command|args|files|spec|paths)(?:\[\d+\])?$/.test(field.fieldPath)) yield field;
  }
}

/** Applies the custom rules of the policy, each finding with the rule's own severity. */
export function customRuleFindings(ctx: CheckContext): { finding: RawFinding; severity: Severity }[] {
  const out: { finding: RawFinding; severity: Severity }[] = [];
  const { pipeline } = ctx;
  for (const rule of ctx.policy.customRules) {
    const add = (fieldPath: string, detail: string, stageId = '') => out.push({ severity: rule.severity, finding: { ruleId: rule.ruleId, fieldPath, message: `${rule.message} (${detail})`, fix: rule.fix, stageId } });
    checkOne(rule, ctx, pipeline, add);
  }
  return out;
}

function checkOne(rule: CustomRule, ctx: CheckContext, pipeline: CheckContext['pipeline'], add: (fieldPath: string, detail: string, stageId?: string) => void): void {
  const { check } = rule;
  switch (check.kind) {
    case 'require_label':
      if (!pipeline.labels[check.label]) add(`labels.${check.label}`, `label "${check.label}" is missing`);
      break;
    case 'forbid_framework':
      pipeline.stages.forEach((s, i) => s.framework === check.framework && add(`stages[${i}].framework`, `stage "${s.id}" uses ${s.framework}`, s.id));
      break;
    case 'max_stages':
      if (pipeline.stages.length > check.max) add('stages', `${pipeline.stages.length} stages, over ${check.max}`);
      break;
    case 'forbid_pattern':
    case 'require_pattern':
      for (const field of targets(ctx, check.target)) {
        const matches = check.regex.test(field.text);
        if (matches === (check.kind === 'forbid_pattern')) add(field.fieldPath, `${check.kind === 'forbid_pattern' ? 'matches' : 'does not match'} /${check.regex.source}/`, field.stageId);
      }
      break;
  }
}

