import assert from 'node:assert/strict';
import { resolveExpressions } from './expressions.js';
import { retryDelayMs } from './scheduler.js';

describe('resolveExpressions()', () => {
  const context = { inputs: { ref: 'main' }, outputs: new Map([['build', { version: '1.2.3' }]]) };

  it('replaces inputs and stage outputs deep inside a run spec', () => {
    const spec = { command: 'deploy ${{ inputs.ref }} ${{stages.build.outputs.version}}', env: { V: '${{ stages.build.outputs.version }}' }, args: ['${{ inputs.ref }}', 3] };
    assert.deepEqual(resolveExpressions(spec, context), { command: 'deploy main 1.2.3', env: { V: '1.2.3' }, args: ['main', 3] });
  });

  it('resolves unknown names to the empty string', () => {
    assert.equal(resolveExpressions('[${{ inputs.nope }}][${{ stages.x.outputs.y }}][${{ env.HOME }}]', context), '[][][]');
  });
});

describe('retryDelayMs()', () => {
  it('doubles per failure up to the cap, with jitter in the upper half', () => {
    assert.equal(retryDelayMs(1, 1000, 30_000, () => 1), 1000);
    assert.equal(retryDelayMs(3, 1000, 30_000, () => 1), 4000);
    assert.equal(retryDelayMs(10, 1000, 30_000, () => 1), 30_000);
    assert.equal(retryDelayMs(3, 1000, 30_000, () => 0), 2000);
  });
});
