import assert from 'node:assert/strict';
import { PolicyError } from './errors.js';
import { DEFAULT_POLICY, parsePolicy, policyFromMessage, policyToMessage } from './policy.js';

describe('parsePolicy()', () => {
  it('applies the defaults to an empty policy', () => {
    const policy = parsePolicy('');
    assert.equal(policy.threshold, 0.9);
    assert.equal(policy.enforcement, 'enforce');
    assert.deepEqual(policy.weights, DEFAULT_POLICY.weights);
    assert.equal(policy.limits.maxDepth, 50);
  });

  const bad: [string, string][] = [
    ['threshold: 2', 'threshold'],
    ['enforcement: maybe', 'enforcement'],
    ['weights: { COF99: 1 }', 'weights.COF99'],
    ['rules: { UCL9-nothing: off }', 'rules.UCL9-nothing'],
    ['rules: { UCL1-schema: off }', 'rules.UCL1-schema'],
    ['rules: { UCL3-owner: loud }', 'rules.UCL3-owner'],
    ['limits: { max_depth: 0 }', 'limits.max_depth'],
    ['custom_rules: [{ name: x, forbid_pattern: "(" }]', 'custom_rules[0].forbid_pattern'],
    ['custom_rules: [{ name: x }]', 'custom_rules[0]'],
    ['custom_rules: [{ name: x, max_stages: 3, require_label: a }]', 'custom_rules[0]'],
    ['colour: blue', 'colour'],
    ['threshold: [', 'document'],
  ];
  for (const [text, fieldPath] of bad) {
    it(`refuses "${text}" naming ${fieldPath}`, () => {
      assert.throws(() => parsePolicy(text), (err) => err instanceof PolicyError && err.fieldPath === fieldPath);
    });
  }
});

describe('policyToMessage() and policyFromMessage()', () => {
  it('round-trip a policy through its document, custom rules included', () => {
    const policy = parsePolicy('threshold: 0.8\ncustom_rules: [{ name: team, require_label: team }]');
    const back = policyFromMessage(policyToMessage(policy));
    assert.equal(back.threshold, 0.8);
    assert.equal(back.customRules[0]?.ruleId, 'UCL5-custom-team');
  });

  it('read the fields when the message has no document', () => {
    const policy = policyFromMessage({ threshold: 0.5, weights: { COF01: 3 }, disabledRules: ['COF13-integration'], document: '', enforcement: 'audit' });
    assert.equal(policy.threshold, 0.5);
    assert.equal(policy.weights.COF01, 3);
    assert.equal(policy.overrides.get('COF13-integration'), 'off');
    assert.equal(policy.enforcement, 'audit');
  });
});
