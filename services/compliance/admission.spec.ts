import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { toServiceError } from '../common/grpc-status.js';
import { validatePipeline } from './rules.js';
import { refusalReason, reportFromStatusError, reportToStatusError } from './admission.js';

describe('reportToStatusError()', () => {
  it('answers nothing for a report that passed', () => {
    const report = validatePipeline({ document: 'name: p\nstages:\n  - { id: a, framework: noop }' });
    assert.equal(reportToStatusError({ ...report, passed: true }), undefined);
  });

  it('refuses with FAILED_PRECONDITION carrying the whole report in the status details', () => {
    const report = validatePipeline({ document: 'name: p\nstages:\n  - { id: a, framework: noop, needs: [a] }' });
    const error = toServiceError(reportToStatusError(report));
    assert.equal(error.code, status.FAILED_PRECONDITION);
    assert.match(error.details, /breaks UCL2 \(Precedence\): UCL2-cycle at stages\[0\]\.needs/);
    assert.deepEqual(reportFromStatusError(error), report);
  });

  it('says the score and threshold when no law is broken', () => {
    const report = validatePipeline({ document: 'name: p\nstages:\n  - { id: a, framework: noop }' });
    assert.match(refusalReason(report), /scored 0\.\d\d, below the admission threshold 0\.90/);
  });

  it('finds no report in an error without details', () => {
    assert.equal(reportFromStatusError({ metadata: undefined }), undefined);
  });
});
