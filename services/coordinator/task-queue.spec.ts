import assert from 'node:assert/strict';
import { Task } from '../common/proto.js';
import { TaskQueue } from './task-queue.js';

const task = (attemptId: string, framework: string, priority = 0, runId = 'r'): Task =>
  Task.fromPartial({ attemptId, runId, stageId: attemptId, framework, attempt: 1, pipelineName: 'p', priority });

describe('TaskQueue', () => {
  it('hands out the highest priority first, FIFO within a priority', () => {
    const queue = new TaskQueue();
    queue.push(task('a', 'shell'));
    queue.push(task('b', 'shell', 5));
    queue.push(task('c', 'shell'));
    queue.push(task('d', 'shell', 5));
    assert.deepEqual(queue.take(new Set(['shell']), 10).map((t) => t.attemptId), ['b', 'd', 'a', 'c']);
  });

  it('only hands out frameworks the node runs, up to its credits', () => {
    const queue = new TaskQueue();
    queue.push(task('a', 'pytest', 9));
    queue.push(task('b', 'shell'));
    queue.push(task('c', 'noop', 1));
    assert.deepEqual(queue.take(new Set(['shell', 'noop']), 1).map((t) => t.attemptId), ['c']);
    assert.equal(queue.size, 2);
    assert.equal(queue.sizeOf('pytest'), 1);
  });

  it('passes over the tasks a limit holds back, asking about each once, and about a waiting candidate again after a take', () => {
    const queue = new TaskQueue();
    for (let i = 0; i < 100; i++) queue.push(task(`held${i}`, 'shell'));
    queue.push(task('free1', 'shell'));
    queue.push(task('free2', 'noop', 1));
    queue.push(task('free3', 'shell'));
    let asked = 0;
    const admit = (t: Task) => (asked++, !t.attemptId.startsWith('held'));
    assert.deepEqual(queue.take(new Set(['shell', 'noop']), 10, admit).map((t) => t.attemptId), ['free2', 'free1', 'free3']);
    // 103 tasks, and the candidate of a lane asked again after each of the 3 takes (a take can fill a limit).
    assert.ok(asked <= 106, `admit was asked ${asked} times`);
    assert.equal(queue.size, 100);
    assert.deepEqual(queue.take(new Set(['shell']), 2).map((t) => t.attemptId), ['held0', 'held1']);
  });

  it('removes the tasks of a cancelled run', () => {
    const queue = new TaskQueue();
    queue.push(task('a', 'shell', 0, 'r1'));
    queue.push(task('b', 'shell', 0, 'r2'));
    assert.deepEqual(queue.removeRun('r1').map((t) => t.attemptId), ['a']);
    assert.equal(queue.size, 1);
  });
});
