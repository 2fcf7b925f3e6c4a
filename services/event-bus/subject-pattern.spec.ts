import assert from 'node:assert/strict';
import { isValidSubjectPattern, subjectMatcher } from './subject-pattern.js';

describe('subject patterns', () => {
  it('matches one token with *', () => {
    const m = subjectMatcher(['stage.*']);
    assert.equal(m('stage.succeeded'), true);
    assert.equal(m('stage.a.b'), false);
    assert.equal(m('run.finished'), false);
    assert.equal(m('stage'), false);
  });

  it('matches one or more trailing tokens with >', () => {
    const m = subjectMatcher(['run.>']);
    assert.equal(m('run.finished'), true);
    assert.equal(m('run.a.b'), true);
    assert.equal(m('run'), false);
  });

  it('matches exact subjects and any of several patterns', () => {
    const m = subjectMatcher(['node.lost', 'run.*']);
    assert.equal(m('node.lost'), true);
    assert.equal(m('node.joined'), false);
    assert.equal(m('run.submitted'), true);
  });

  it('matches everything with no patterns', () => {
    assert.equal(subjectMatcher([])('anything.at.all'), true);
  });

  it('tells well-formed patterns from bad ones', () => {
    for (const p of ['a', 'a.*', 'a.>', '*.b', '>']) assert.equal(isValidSubjectPattern(p), true, p);
    for (const p of ['', 'a..b', 'a.>.b', 'a b', 'a*', '.a']) assert.equal(isValidSubjectPattern(p), false, p);
  });
});
