/** The value of an unlabelled sample in Prometheus text exposition format, if present. */
export function prometheusValue(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^(\S+?)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match?.[1] === name) {
      const value = Number(match[2]);
      return Number.isFinite(value) ? value : undefined;
    }
  }
  return undefined;
}

/**
 * Reads sample `name` from the Prometheus endpoint at `url`.
 * @returns the value, or why there is none (an HTTP status, a missing sample, a network error); never throws.
 */
export async function readPrometheusSample(url: string, name: string, timeoutMs = 5_000): Promise<{ value: number } | { problem: string }> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return { problem: `HTTP ${response.status}` };
    const value = prometheusValue(await response.text(), name);
    return value === undefined ? { problem: 'no such sample' } : { value };
  } catch (err) {
    return { problem: (err as Error).message };
  }
}
