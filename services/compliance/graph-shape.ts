import type { DagStage } from '../common/dag.js';

/** The shape of an acyclic graph of stages (COF02 Relational, COF07 Computational, UCL3 orphans). */
export interface GraphShape {
  /** Stages on the longest chain of needs (1 for stages without needs). */
  depth: number;
  /** Most stages on one level (a stage's level is 1 + the highest level it needs). */
  width: number;
  /** For each stage index, how many stages need it. */
  fanOut: number[];
  /** `needs` entries already implied by another need of the same stage: `{ index, needIndex }`. */
  redundantNeeds: { index: number; needIndex: number }[];
  /** Indexes of stages that neither need nor are needed by another stage. */
  isolated: number[];
}

/**
 * Measures a graph of stages. Call it only on a graph without cycle,
 * duplicate ids or dangling needs (UCL2 clean). Linear in stages and needs,
 * except the redundancy check, which keeps one ancestor bitset per stage.
 */
export function graphShape(stages: readonly DagStage[]): GraphShape {
  const n = stages.length;
  const indexOf = new Map(stages.map((s, i) => [s.id, i]));
  const needIndexes = stages.map((s) => s.needs.map((need) => indexOf.get(need)!));
  // Edges once each: a repeated need is UCL2-duplicate-need, not two edges.
  const edges = needIndexes.map((indexes) => (indexes.length > 1 ? [...new Set(indexes)] : indexes));
  const fanOut = new Array<number>(n).fill(0);
  const dependents: number[][] = stages.map(() => []);
  edges.forEach((needs, i) => {
    for (const j of needs) {
      fanOut[j]!++;
      dependents[j]!.push(i);
    }
  });
  // Kahn's algorithm gives a topological order without recursion.
  const pending = edges.map((needs) => needs.length);
  const order: number[] = [];
  for (let i = 0; i < n; i++) if (pending[i] === 0) order.push(i);
  for (let k = 0; k < order.length; k++) for (const d of dependents[order[k]!]!) if (--pending[d]! === 0) order.push(d);
  const level = new Array<number>(n).fill(0);
  const words = Math.ceil(n / 32);
  const ancestors = new Uint32Array(n * words);
  const redundantNeeds: GraphShape['redundantNeeds'] = [];
  const implied = new Uint32Array(words);
  for (const i of order) {
    const needs = needIndexes[i]!;
    if (needs.length === 0) continue;
    implied.fill(0);
    const own = i * words;
    for (const j of needs) {
      level[i] = Math.max(level[i]!, level[j]! + 1);
      const base = j * words;
      for (let w = 0; w < words; w++) implied[w]! |= ancestors[base + w]!;
    }
    needs.forEach((j, needIndex) => {
      if (implied[j >>> 5]! & (1 << (j & 31))) redundantNeeds.push({ index: i, needIndex });
    });
    for (let w = 0; w < words; w++) ancestors[own + w] = implied[w]!;
    for (const j of needs) ancestors[own + (j >>> 5)]! |= 1 << (j & 31);
  }
  const perLevel = new Map<number, number>();
  for (const l of level) perLevel.set(l, (perLevel.get(l) ?? 0) + 1);
  const isolated = n < 2 ? [] : stages.flatMap((s, i) => (s.needs.length === 0 && fanOut[i] === 0 ? [i] : []));
  return { depth: n ? Math.max(...level) + 1 : 0, width: Math.max(0, ...perLevel.values()), fanOut, redundantNeeds, isolated };
}
