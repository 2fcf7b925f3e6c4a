import assert from 'node:assert/strict';
import { findSecret, unicodeProblems } from './integrity.js';

describe('findSecret()', () => {
  const secrets: [string, string?][] = [
    ['AKIAIOSFODNN7EXAMPLE'],
    ['git clone https://ghp_0123456789abcdefghijABCDEFGHIJ012345@github.com/a/b'],
    ['xoxb-1234567890-abcdefghij'],
    ['-----BEGIN RSA PRIVATE KEY-----'],
    ['psql postgres://app:s3cret@db/app'],
    ['mysql --password hunter22'],
    ['make PASSWORD=hunter22'],
    ['curl -H "api_key: abcd1234" x'],
    ['hunter2hunter2', 'DB_PASSWORD'],
    ['Bearer abcdef0123456789', 'Authorization'],
  ];
  for (const [text, key] of secrets) it(`finds the secret in ${key ? `${key}=` : ''}${text.slice(0, 40)}`, () => assert.ok(findSecret(text, key)));

  const clean: [string, string?][] = [
    ['deploy --token "$DEPLOY_TOKEN"'],
    ['login --password=${{ inputs.password }}'],
    ['${{ inputs.token }}', 'API_TOKEN'],
    ['$VAULT_TOKEN', 'GITHUB_TOKEN'],
    ['Bearer ${{ inputs.token }}', 'Authorization'],
    ['echo token refreshed'],
    ['https://example.com/path@v2'],
    ['make build'],
  ];
  for (const [text, key] of clean) it(`finds no secret in ${key ? `${key}=` : ''}${text}`, () => assert.equal(findSecret(text, key), undefined));

  it('only counts token formats in prose', () => {
    assert.equal(findSecret('rotates the token store: secret = yes please', '', true), undefined);
    assert.ok(findSecret('uses AKIAIOSFODNN7EXAMPLE', '', true));
  });
});

describe('unicodeProblems()', () => {
  it('names bidirectional controls and invisible characters by code point', () => {
    assert.deepEqual(unicodeProblems('a\u202Eb'), [{ kind: 'bidi', codePoint: 'U+202E' }]);
    assert.deepEqual(unicodeProblems('a\u200Bb'), [{ kind: 'invisible', codePoint: 'U+200B' }]);
  });

  it('flags text that is not in normal form C and accepts ordinary non-ASCII text', () => {
    assert.deepEqual(unicodeProblems('cafe\u0301'), [{ kind: 'non-nfc', codePoint: '' }]);
    assert.deepEqual(unicodeProblems('café 日本語 עברית'), []);
  });
});
