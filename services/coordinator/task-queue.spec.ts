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

  it('removes the tasks of a cancelled run', () => {
    const queue = new TaskQueue();
    queue.push(task('a', 'shell', 0, 'r1'));
    queue.push(task('b', 'shell', 0, 'r2'));
    assert.deepEqual(queue.removeRun('r1').map((t) => t.attemptId), ['a']);
    assert.equal(queue.size, 1);
  });
});
