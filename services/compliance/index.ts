export { Compliance, createComplianceService, SERVICE_START_POLICY, type ComplianceServiceOptions } from './compliance-service.js';
export { validatePipeline, type ValidateOptions } from './rules.js';
export { DEFAULT_LIMITS, DEFAULT_POLICY, DEFAULT_THRESHOLD, Enforcement, parsePolicy, policyFromMessage, policyToMessage, resolvePolicy, type CustomRule, type PolicyLimits, type ResolvedPolicy } from './policy.js';
export { admissionError, refusalReason, reportFromStatusError, reportToStatusError } from './admission.js';
export { AuditLog } from './audit-log.js';
export { auditRun, createAuditor, type Auditor, type AuditorOptions } from './auditor.js';
export { DIMENSIONS, LAWS, RULES, type RuleInfo } from './rule-catalog.js';
export { precedenceFindings } from './law-rules.js';
export { PolicyError } from './errors.js';
