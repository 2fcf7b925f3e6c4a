import type { Task } from '../common/proto.js';

/**
 * Queued tasks per framework, highest priority first and, within a priority,
 * first in first out.
 */
export class TaskQueue {
  readonly #queues = new Map<string, Task[]>();

  get size(): number {
    let n = 0;
    for (const q of this.#queues.values()) n += q.length;
    return n;
  }

  /** Frameworks with at least one task queued. */
  frameworks(): string[] {
    return [...this.#queues].filter(([, q]) => q.length > 0).map(([f]) => f);
  }

  sizeOf(framework: string): number {
    return this.#queues.get(framework)?.length ?? 0;
  }

  push(task: Task): void {
    let queue = this.#queues.get(task.framework);
    if (!queue) this.#queues.set(task.framework, (queue = []));
    // Binary search for the first task of lower priority; insert before it.
    let lo = 0;
    let hi = queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (queue[mid]!.priority >= task.priority) lo = mid + 1;
      else hi = mid;
    }
    queue.splice(lo, 0, task);
  }

  /**
   * Takes up to `max` tasks of the given frameworks, highest priority first.
   * `admit` can hold a task back (a concurrency limit): it stays queued and the
   * next task in line is considered instead. `onTake` is called for each task
   * taken before the next one is chosen, so limits can count it. Limits only
   * tighten within one call, so a task held back stays held back: each queue
   * is walked once, however many tasks wait behind a full limit.
   */
  take(frameworks: ReadonlySet<string>, max: number, admit: (task: Task) => boolean = () => true, onTake: (task: Task) => void = () => undefined): Task[] {
    const lanes: { framework: string; queue: Task[]; next: number; taken: Set<number> }[] = [];
    for (const framework of frameworks) {
      const queue = this.#queues.get(framework);
      if (queue?.length) lanes.push({ framework, queue, next: 0, taken: new Set() });
    }
    const taken: Task[] = [];
    while (taken.length < max) {
      let best: (typeof lanes)[number] | undefined;
      for (const lane of lanes) {
        while (lane.next < lane.queue.length && !admit(lane.queue[lane.next]!)) lane.next++;
        const candidate = lane.queue[lane.next];
        if (candidate && (!best || candidate.priority > best.queue[best.next]!.priority)) best = lane;
      }
      if (!best) break;
      const task = best.queue[best.next]!;
      best.taken.add(best.next++);
      onTake(task);
      taken.push(task);
    }
    for (const lane of lanes) {
      if (lane.taken.size > 0) this.#queues.set(lane.framework, lane.queue.filter((_, i) => !lane.taken.has(i)));
    }
    return taken;
  }

  /** Removes every queued task of a framework; returns them. */
  removeFramework(framework: string): Task[] {
    const removed = this.#queues.get(framework) ?? [];
    this.#queues.delete(framework);
    return removed;
  }

  /** Removes the queued tasks of a run (on cancellation); returns them. */
  removeRun(runId: string): Task[] {
    const removed: Task[] = [];
    for (const [framework, queue] of this.#queues) {
      const kept = queue.filter((t) => (t.runId === runId ? (removed.push(t), false) : true));
      this.#queues.set(framework, kept);
    }
    return removed;
  }
}
