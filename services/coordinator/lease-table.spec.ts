import assert from 'node:assert/strict';
import { LeaseTable } from './lease-table.js';

describe('LeaseTable', () => {
  describe('release()', () => {
    it('accepts the outcome of the node holding the lease, once', () => {
      const leases = new LeaseTable(1000);
      leases.grant('a1', 'n1', 0);
      assert.equal(leases.release('a1', 'n2'), false);
      assert.equal(leases.release('a1', 'n1'), true);
      assert.equal(leases.release('a1', 'n1'), false);
    });
  });

  describe('renew() and takeExpired()', () => {
    it('refuses an outcome whose lease has expired', () => {
      const leases = new LeaseTable(1000);
      leases.grant('a1', 'n1', 0);
      leases.grant('a2', 'n1', 0);
      assert.equal(leases.renew(['a2', 'unknown'], 'n1', 900), 1);
      assert.deepEqual(leases.takeExpired(1000).map((l) => l.attemptId), ['a1']);
      assert.equal(leases.release('a1', 'n1'), false);
      assert.deepEqual(leases.heldBy('n1'), ['a2']);
    });
  });

  describe('takeNode()', () => {
    it('removes every lease of a lost node', () => {
      const leases = new LeaseTable(1000);
      leases.grant('a1', 'n1');
      leases.grant('a2', 'n2');
      assert.deepEqual(leases.takeNode('n1').map((l) => l.attemptId), ['a1']);
      assert.equal(leases.size, 1);
    });
  });
});
