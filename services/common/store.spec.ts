import assert from 'node:assert/strict';
import { migrationStatements, sqlLiteral } from './store.js';

describe('migrationStatements()', () => {
  it('splits at semicolons ending a line, but not inside a dollar-quoted body', () => {
    const sql = `ALTER TABLE a ADD COLUMN b text;
   CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$
   BEGIN
     UPDATE a SET b = 'x;';
     DELETE FROM a;
   END
   $$;
   CREATE INDEX a_b ON a (b)`;
    const statements = migrationStatements(sql);
    assert.equal(statements.length, 3);
    assert.equal(statements[0], 'ALTER TABLE a ADD COLUMN b text');
    assert.match(statements[1]!, /^CREATE FUNCTION[\s\S]*DELETE FROM a;[\s\S]*\$\$$/);
    assert.equal(statements[2], 'CREATE INDEX a_b ON a (b)');
  });
});

describe('sqlLiteral()', () => {
  it('doubles quotes and leaves backslashes alone', () => {
    assert.equal(sqlLiteral(`it's \\n`), `'it''s \\n'`);
  });
});
