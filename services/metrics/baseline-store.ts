import { InvalidArgumentError } from '../common/errors.js';
import type { Queryable } from '../common/store.js';
import { Baseline, GroupBy } from '../common/proto.js';
import { isMetricWindow } from './metrics-recorder.js';

/** Tolerance of a baseline that sets none: 10 %. */
export const DEFAULT_TOLERANCE = 0.1;
/** Finished stages a window must hold before it is compared, when the baseline sets none. */
export const DEFAULT_MIN_SAMPLES = 20;
/** Window of a baseline that sets none. */
export const DEFAULT_BASELINE_WINDOW = '5m';
/** Largest tolerance accepted (a latency may be allowed to grow tenfold). */
const MAX_TOLERANCE = 10;
const NAME = /^[a-z0-9._-]{1,64}$/;

/**
 * Checks a baseline from a client and fills its defaults (tolerance 0.1,
 * window 5m, 20 samples).
 * @throws InvalidArgumentError with the field path (`baseline.tolerance`, …).
 */
export function resolveBaseline(input: Baseline | undefined): Baseline {
  if (!input) throw new InvalidArgumentError('a baseline is required', 'baseline');
  if (!input.name) throw new InvalidArgumentError('a name is required', 'baseline.name');
  if (!NAME.test(input.name)) throw new InvalidArgumentError('a name is 1-64 characters of a-z, 0-9, ".", "_" and "-"', 'baseline.name');
  for (const [field, value] of [['stages_per_sec', input.stagesPerSec], ['p95_ms', input.p95Ms]] as const) {
    if (!Number.isFinite(value) || value < 0) throw new InvalidArgumentError('must be a non-negative number', `baseline.${field}`);
  }
  if (input.stagesPerSec === 0 && input.p95Ms === 0) throw new InvalidArgumentError('set stages_per_sec, p95_ms or both', 'baseline');
  if (!Number.isFinite(input.tolerance) || input.tolerance < 0 || input.tolerance > MAX_TOLERANCE) {
    throw new InvalidArgumentError(`must be between 0 and ${MAX_TOLERANCE} (0.1 allows 10 %)`, 'baseline.tolerance');
  }
  const window = input.window || DEFAULT_BASELINE_WINDOW;
  if (!isMetricWindow(window)) throw new InvalidArgumentError('expected one of 1m, 5m, 1h', 'baseline.window');
  if (input.groupBy === GroupBy.UNRECOGNIZED) throw new InvalidArgumentError('unknown group-by', 'baseline.group_by');
  if (input.group && input.groupBy === GroupBy.GROUP_BY_UNSPECIFIED) throw new InvalidArgumentError('a group needs group_by (framework, node or pipeline)', 'baseline.group');
  return {
    ...input,
    tolerance: input.tolerance || DEFAULT_TOLERANCE,
    window,
    minSamples: input.minSamples || DEFAULT_MIN_SAMPLES,
  };
}

interface BaselineRow {
  definition: unknown;
  updated_at: Date | string;
}

function fromRow(row: BaselineRow): Baseline {
  return { ...Baseline.fromJSON(row.definition), updatedAt: new Date(row.updated_at) };
}

/** Named baselines in the store (table `metrics_baselines`), PGlite or PostgreSQL alike. */
export class BaselineStore {
  constructor(private readonly db: Queryable) {}

  /** Stores (or replaces) a checked baseline; returns it with its `updated_at`. */
  async put(baseline: Baseline): Promise<Baseline> {
    const definition = Baseline.toJSON({ ...baseline, updatedAt: undefined });
    const [row] = await this.db.query<BaselineRow>(
      `INSERT INTO metrics_baselines (name, definition, updated_at) VALUES ($1, $2, clock_timestamp())
       ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = EXCLUDED.updated_at
       RETURNING definition, updated_at`,
      [baseline.name, JSON.stringify(definition)],
    );
    return fromRow(row!);
  }

  /** Every baseline, by name. */
  async list(): Promise<Baseline[]> {
    const rows = await this.db.query<BaselineRow>('SELECT definition, updated_at FROM metrics_baselines ORDER BY name');
    return rows.map(fromRow);
  }
}
