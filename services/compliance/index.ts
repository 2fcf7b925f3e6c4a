export { createComplianceService } from './compliance-service.js';
export { DEFAULT_THRESHOLD, LAWS, precedenceFindings, validatePipeline } from './rules.js';
