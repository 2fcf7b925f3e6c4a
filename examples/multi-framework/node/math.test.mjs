// Tests run by the `unit` stage of examples/multi-framework.yaml with node --test.
import assert from 'node:assert/strict';
import { test } from 'node:test';

test('adds', () => assert.equal(1 + 2, 3));
test('multiplies', () => assert.equal(2 * 3, 6));
test('sees the version built upstream', () => assert.equal(process.env.APP_VERSION, '1.4.0'));
test.skip('divides by zero', () => assert.equal(1 / 0, Infinity));
