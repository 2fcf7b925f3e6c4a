const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;

/** The longest duration accepted: what a Node timer can wait (about 24.8 days, 596 h). */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * Parses a duration string of the pipeline format ("500ms", "30s", "5m",
 * "1h30m") into milliseconds. Returns undefined when the text is not a
 * duration or is longer than MAX_DURATION_MS.
 */
export function parseDurationMs(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(PART)) {
    total += Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
  }
  return total > MAX_DURATION_MS ? undefined : Math.round(total);
}

/** Formats milliseconds for people: "850ms", "1.2s", "3m4s". */
export function formatDurationMs(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes}m${Math.round((ms % 60_000) / 1_000)}s`;
}
