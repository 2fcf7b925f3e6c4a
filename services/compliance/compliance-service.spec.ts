import assert from 'node:assert/strict';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { callUnary } from '../common/grpc-client.js';
import { FIELD_PATH_METADATA } from '../common/grpc-status.js';
import { GrpcServer } from '../common/grpc-server.js';
import { createLogger } from '../common/logger.js';
import { ComplianceClient, Severity, type Policy } from '../common/proto.js';
import { AuditLog } from './audit-log.js';
import { Compliance, createComplianceService } from './compliance-service.js';
import { resolvePolicy } from './policy.js';
import { readPipelineOrThrow } from '../common/pipeline-document.js';

const terse = 'name: terse\nstages:\n  - { id: a, framework: shell, run: { command: make } }';
const policyOf = (document: string): Policy => ({ threshold: 0, weights: {}, disabledRules: [], document, enforcement: '' });

describe('ComplianceService', () => {
  let server: GrpcServer;
  let client: ComplianceClient;
  const auditLog = new AuditLog();

  before(async () => {
    const logger = createLogger({ level: 'silent' });
    server = await GrpcServer.start({ logger, services: [createComplianceService(logger, { auditLog, availableFrameworks: async () => ['shell'] })] });
    client = new ComplianceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    await server?.stop();
  });

  it('starts with the default policy auditing the score: threshold 0.90, laws enforced', async () => {
    const { policy } = await callUnary(client.getPolicy.bind(client), {});
    assert.equal(policy?.threshold, 0.9);
    assert.equal(policy?.enforcement, 'audit');
    const { report } = await callUnary(client.validate.bind(client), { document: terse, policy: undefined });
    assert.ok(report!.score < 0.9);
    assert.equal(report!.passed, true);
    const { report: cycle } = await callUnary(client.validate.bind(client), { document: 'name: c\nstages:\n  - { id: a, framework: noop, needs: [a] }', policy: undefined });
    assert.equal(cycle!.passed, false);
  });

  it('scores COF10 against the frameworks the cluster offers', async () => {
    const { report } = await callUnary(client.validate.bind(client), { document: 'name: p\nstages:\n  - { id: a, framework: pytest, run: { paths: [t] } }', policy: undefined });
    assert.ok(report!.findings.some((f) => f.ruleId === 'COF10-framework-unavailable'));
  });

  it('replaces the policy with SetPolicy and enforces its threshold from then on', async () => {
    const { policy } = await callUnary(client.setPolicy.bind(client), { policy: policyOf('threshold: 0.95\nenforcement: enforce\ncustom_rules: [{ name: team, require_label: team }]') });
    assert.equal(policy?.threshold, 0.95);
    assert.match(policy!.document, /custom_rules/);
    const { report } = await callUnary(client.validate.bind(client), { document: terse, policy: undefined });
    assert.equal(report!.passed, false);
    assert.ok(report!.findings.some((f) => f.ruleId === 'UCL5-custom-team' && f.severity === Severity.SEVERITY_ERROR));
    assert.equal((await callUnary(client.getPolicy.bind(client), {})).policy?.threshold, 0.95);
  });

  it('validates against a policy sent with the request without storing it', async () => {
    const { report } = await callUnary(client.validate.bind(client), { document: terse, policy: policyOf('enforcement: audit') });
    assert.equal(report!.enforcement, 'audit');
    assert.equal((await callUnary(client.getPolicy.bind(client), {})).policy?.enforcement, 'enforce');
  });

  it('refuses a malformed policy with INVALID_ARGUMENT naming the key', async () => {
    await assert.rejects(callUnary(client.setPolicy.bind(client), { policy: policyOf('weights: { COF42: 1 }') }), (err: ServiceError) => {
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.equal(err.metadata.get(FIELD_PATH_METADATA)[0], 'policy.weights.COF42');
      return true;
    });
    await assert.rejects(callUnary(client.setPolicy.bind(client), { policy: undefined }), (err: ServiceError) => err.code === status.INVALID_ARGUMENT);
  });

  it('lists the audit findings of a run', async () => {
    auditLog.record('run-1', [{ ruleId: 'UCL1-audit-missing-output', severity: Severity.SEVERITY_ERROR, stageId: 'a', fieldPath: 'stages[0].outputs', message: 'm', fix: 'f', runId: 'run-1' }]);
    const { findings } = await callUnary(client.audit.bind(client), { runId: 'run-1' });
    assert.deepEqual(findings.map((f) => f.ruleId), ['UCL1-audit-missing-output']);
    assert.deepEqual((await callUnary(client.audit.bind(client), { runId: 'other' })).findings, []);
    await assert.rejects(callUnary(client.audit.bind(client), { runId: '' }), (err: ServiceError) => err.code === status.INVALID_ARGUMENT);
  });
});

describe('Compliance in process', () => {
  it('reuses the report of a pipeline until the policy or the frameworks of the cluster change', async () => {
    let frameworks = ['shell'];
    const compliance = new Compliance(createLogger({ level: 'silent' }), { availableFrameworks: async () => frameworks });
    const pipeline = readPipelineOrThrow({ document: terse });
    const first = await compliance.validate({ pipeline, policy: undefined });
    assert.equal(await compliance.validate({ pipeline, policy: undefined }), first);
    // An equal pipeline in another message has the same report; another pipeline has its own.
    assert.equal(await compliance.validate({ pipeline: readPipelineOrThrow({ document: terse }), policy: undefined }), first);
    const described = await compliance.validate({ pipeline: readPipelineOrThrow({ document: `description: checks\n${terse}` }), policy: undefined });
    assert.notEqual(described, first);
    assert.notDeepEqual(described.dimensions, first.dimensions);

    compliance.setPolicy(resolvePolicy({ threshold: 0.95, enforcement: 'enforce' }));
    const enforced = await compliance.validate({ pipeline, policy: undefined });
    assert.equal(first.passed, true);
    assert.equal(enforced.passed, false);

    frameworks = ['mocha'];
    await new Promise((resolve) => setTimeout(resolve, 1_050)); // the frameworks are asked at most once a second
    const unplaced = await compliance.validate({ pipeline, policy: undefined });
    assert.ok(unplaced.findings.some((f) => f.ruleId === 'COF10-framework-unavailable'));
    assert.ok(!enforced.findings.some((f) => f.ruleId === 'COF10-framework-unavailable'));
  });
});
