import { parseDocument, stringify } from 'yaml';
import { Severity, type Policy } from '../common/proto.js';
import { PolicyError } from './errors.js';
import { DIMENSIONS, LAWS, RULES, type DimensionId, type LawId } from './rule-catalog.js';

/** What the admission gate does with a pipeline below the threshold. */
export const Enforcement = {
  /** Refuse it: the gate checks the laws and the threshold. */
  ENFORCE: 'enforce',
  /** Admit it and report the score: the gate checks the laws only (as Kyverno's Audit mode). */
  AUDIT: 'audit',
} as const;
export type Enforcement = (typeof Enforcement)[keyof typeof Enforcement];

/** Bounds on the shape of a pipeline (COF07 Computational, UCL5-limits). */
export interface PolicyLimits {
  /** Above this many stages the pipeline breaks UCL5 (`UCL5-limits`). @default 10000 */
  maxStages: number;
  /** Longest chain of needs. @default 50 */
  maxDepth: number;
  /** Most stages on one level of the graph. @default 500 */
  maxWidth: number;
  /** Most stages needing one stage. @default 100 */
  maxFanOut: number;
  /** Most needs of one stage. @default 100 */
  maxFanIn: number;
}

/** Where a custom pattern rule looks. */
export const PatternTarget = { COMMANDS: 'commands', URLS: 'urls' } as const;
export type PatternTarget = (typeof PatternTarget)[keyof typeof PatternTarget];

/** What a declarative custom rule checks. */
export type CustomCheck =
  | { kind: 'require_label'; label: string }
  | { kind: 'forbid_framework'; framework: string }
  | { kind: 'max_stages'; max: number }
  | { kind: 'forbid_pattern' | 'require_pattern'; target: PatternTarget; regex: RegExp };

/** A custom rule of a policy, named `UCLn-custom-<name>` in findings. */
export interface CustomRule {
  ruleId: string;
  severity: Severity;
  message: string;
  fix: string;
  check: CustomCheck;
}

/** A policy in its strict form, every default applied. */
export interface ResolvedPolicy {
  threshold: number;
  enforcement: Enforcement;
  /** Weight of each COF dimension in the overall score. */
  weights: Readonly<Record<DimensionId, number>>;
  /** Severity of each rule whose policy changed it; `off` disables the rule. */
  overrides: ReadonlyMap<string, Severity | 'off'>;
  limits: Readonly<PolicyLimits>;
  customRules: readonly CustomRule[];
  /** The policy as YAML, as it was given (or the canonical form of the defaults). */
  document: string;
}

/** The admission threshold of the default policy. */
export const DEFAULT_THRESHOLD = 0.9;

/** @see PolicyLimits */
export const DEFAULT_LIMITS: Readonly<PolicyLimits> = { maxStages: 10_000, maxDepth: 50, maxWidth: 500, maxFanOut: 100, maxFanIn: 100 };

const SEVERITY_NAMES: Record<string, Severity | 'off'> = {
  error: Severity.SEVERITY_ERROR,
  warning: Severity.SEVERITY_WARNING,
  info: Severity.SEVERITY_INFO,
  off: 'off',
};

const LIMIT_KEYS: Record<string, keyof PolicyLimits> = { max_stages: 'maxStages', max_depth: 'maxDepth', max_width: 'maxWidth', max_fan_out: 'maxFanOut', max_fan_in: 'maxFanIn' };
const CHECK_KEYS = ['require_label', 'forbid_framework', 'max_stages', 'forbid_pattern', 'require_pattern'] as const;
const TOP_KEYS = new Set(['threshold', 'enforcement', 'weights', 'rules', 'limits', 'custom_rules']);
const CUSTOM_KEYS = new Set(['name', 'law', 'severity', 'message', 'fix', 'in', ...CHECK_KEYS]);

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function severityOf(value: unknown, path: string): Severity | 'off' {
  const severity = SEVERITY_NAMES[String(value)];
  if (severity === undefined) throw new PolicyError(`expected error, warning, info or off, got "${String(value)}"`, path);
  return severity;
}

function numberIn(value: unknown, path: string, min: number, max: number, integer = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new PolicyError(`expected ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`, path);
  }
  return value;
}

function customRule(data: unknown, index: number): CustomRule {
  const path = `custom_rules[${index}]`;
  if (!isRecord(data)) throw new PolicyError('expected a mapping', path);
  for (const key of Object.keys(data)) if (!CUSTOM_KEYS.has(key)) throw new PolicyError(`unknown key "${key}"`, `${path}.${key}`);
  const name = String(data.name ?? '');
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) throw new PolicyError('expected a name of [a-z0-9-]', `${path}.name`);
  const law = String(data.law ?? 'UCL5');
  if (!LAWS.some((l) => l.id === law)) throw new PolicyError(`expected one of ${LAWS.map((l) => l.id).join(', ')}`, `${path}.law`);
  const severity = severityOf(data.severity ?? 'error', `${path}.severity`);
  if (severity === 'off') throw new PolicyError('a custom rule is switched off by removing it', `${path}.severity`);
  const present = CHECK_KEYS.filter((k) => data[k] !== undefined);
  if (present.length !== 1) throw new PolicyError(`expected exactly one of ${CHECK_KEYS.join(', ')}`, path);
  const kind = present[0]!;
  const value = data[kind];
  let check: CustomCheck;
  if (kind === 'max_stages') check = { kind, max: numberIn(value, `${path}.${kind}`, 1, 10_000, true) };
  else if (kind === 'require_label' || kind === 'forbid_framework') {
    if (typeof value !== 'string' || !value) throw new PolicyError('expected a string', `${path}.${kind}`);
    check = kind === 'require_label' ? { kind, label: value } : { kind, framework: value };
  } else {
    if (typeof value !== 'string' || !value) throw new PolicyError('expected a regular expression', `${path}.${kind}`);
    const target = String(data.in ?? PatternTarget.COMMANDS);
    if (target !== PatternTarget.COMMANDS && target !== PatternTarget.URLS) throw new PolicyError('expected commands or urls', `${path}.in`);
    let regex: RegExp;
    try {
      regex = new RegExp(value, 'u');
    } catch (err) {
      throw new PolicyError(`not a valid regular expression (${(err as Error).message})`, `${path}.${kind}`, { cause: err });
    }
    check = { kind, target, regex };
  }
  const message = typeof data.message === 'string' ? data.message : `breaks the policy rule "${name}"`;
  const fix = typeof data.fix === 'string' ? data.fix : 'change the pipeline to meet the policy, or ask its owner';
  return { ruleId: `${law}-custom-${name}`, severity, message, fix, check };
}

/**
 * Applies the defaults to plain policy data (the YAML shape) and checks it.
 * @throws PolicyError naming the offending key.
 */
export function resolvePolicy(data: unknown, document = stringify(data ?? {})): ResolvedPolicy {
  if (data === null || data === undefined) data = {};
  if (!isRecord(data)) throw new PolicyError('a policy is a mapping', 'policy');
  for (const key of Object.keys(data)) if (!TOP_KEYS.has(key)) throw new PolicyError(`unknown key "${key}"`, key);
  const threshold = data.threshold === undefined ? DEFAULT_THRESHOLD : numberIn(data.threshold, 'threshold', 0, 1);
  const enforcement = String(data.enforcement ?? Enforcement.ENFORCE);
  if (enforcement !== Enforcement.ENFORCE && enforcement !== Enforcement.AUDIT) throw new PolicyError('expected enforce or audit', 'enforcement');
  const weights = Object.fromEntries(DIMENSIONS.map((d) => [d.id, d.weight])) as Record<DimensionId, number>;
  if (data.weights !== undefined) {
    if (!isRecord(data.weights)) throw new PolicyError('expected a mapping of dimension id to weight', 'weights');
    for (const [id, weight] of Object.entries(data.weights)) {
      if (!(id in weights)) throw new PolicyError(`unknown dimension (expected COF01 .. COF13)`, `weights.${id}`);
      weights[id as DimensionId] = numberIn(weight, `weights.${id}`, 0, 100);
    }
    if (Object.values(weights).every((w) => w === 0)) throw new PolicyError('at least one dimension must weigh more than 0', 'weights');
  }
  const overrides = new Map<string, Severity | 'off'>();
  if (data.rules !== undefined) {
    if (!isRecord(data.rules)) throw new PolicyError('expected a mapping of rule id to error, warning, info or off', 'rules');
    for (const [id, value] of Object.entries(data.rules)) {
      if (!RULES.has(id)) throw new PolicyError('unknown rule id (see docs/compliance.md)', `rules.${id}`);
      if (id === 'UCL1-syntax' || id === 'UCL1-schema') throw new PolicyError('a pipeline that cannot be read cannot be checked: this rule stays on', `rules.${id}`);
      overrides.set(id, severityOf(value, `rules.${id}`));
    }
  }
  const limits = { ...DEFAULT_LIMITS };
  if (data.limits !== undefined) {
    if (!isRecord(data.limits)) throw new PolicyError('expected a mapping', 'limits');
    for (const [key, value] of Object.entries(data.limits)) {
      const field = LIMIT_KEYS[key];
      if (!field) throw new PolicyError(`unknown key "${key}"`, `limits.${key}`);
      limits[field] = numberIn(value, `limits.${key}`, 1, 1_000_000, true);
    }
  }
  if (data.custom_rules !== undefined && !Array.isArray(data.custom_rules)) throw new PolicyError('expected a list', 'custom_rules');
  const customRules = ((data.custom_rules as unknown[] | undefined) ?? []).map(customRule);
  const seen = new Set<string>();
  customRules.forEach((r, i) => {
    if (seen.has(r.ruleId)) throw new PolicyError(`a custom rule named like this already exists`, `custom_rules[${i}].name`);
    seen.add(r.ruleId);
  });
  return { threshold, enforcement: enforcement as Enforcement, weights, overrides, limits, customRules, document };
}

/**
 * Parses a policy file (YAML or JSON).
 * @throws PolicyError on a syntax error or a bad key.
 */
export function parsePolicy(text: string): ResolvedPolicy {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    const [error] = doc.errors;
    throw new PolicyError(error!.message.split('\n')[0]!, 'document');
  }
  return resolvePolicy(doc.toJS({ maxAliasCount: 100 }), text);
}

/** The default policy: threshold 0.90, enforced, default weights and limits, no custom rule. */
export const DEFAULT_POLICY: ResolvedPolicy = resolvePolicy(
  { threshold: DEFAULT_THRESHOLD, enforcement: Enforcement.ENFORCE, weights: Object.fromEntries(DIMENSIONS.map((d) => [d.id, d.weight])) },
);

/** The policy as the wire message (GetPolicy, SetPolicy). */
export function policyToMessage(policy: ResolvedPolicy): Policy {
  return {
    threshold: policy.threshold,
    weights: { ...policy.weights },
    disabledRules: [...policy.overrides].filter(([, s]) => s === 'off').map(([id]) => id),
    document: policy.document,
    enforcement: policy.enforcement,
  };
}

/**
 * Reads a wire policy: its `document` when set (it carries everything,
 * custom rules included), otherwise threshold, weights, disabled rules and
 * enforcement from the fields. Unset fields keep their defaults.
 * @throws PolicyError naming the offending field.
 */
export function policyFromMessage(message: Policy): ResolvedPolicy {
  if (message.document.trim()) return parsePolicy(message.document);
  const data: Record<string, unknown> = {};
  if (message.threshold) data.threshold = message.threshold;
  if (message.enforcement) data.enforcement = message.enforcement;
  if (Object.keys(message.weights).length) data.weights = message.weights;
  if (message.disabledRules.length) data.rules = Object.fromEntries(message.disabledRules.map((id) => [id, 'off']));
  return resolvePolicy(data);
}

/** The severity a rule has under a policy, or `off`. */
export function severityUnder(policy: ResolvedPolicy, ruleId: string, fallback: Severity): Severity | 'off' {
  return policy.overrides.get(ruleId) ?? fallback;
}
