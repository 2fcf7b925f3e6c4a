/**
 * NATS-style subject patterns over dot-separated subjects: `*` matches exactly
 * one token, `>` (last token only) matches one or more trailing tokens.
 * `stage.*` matches `stage.succeeded`; `run.>` matches `run.finished` and `run.a.b`.
 */
export function subjectMatcher(patterns: readonly string[]): (subject: string) => boolean {
  if (patterns.length === 0) return () => true;
  const compiled = patterns.map((p) => p.split('.'));
  return (subject) => {
    const tokens = subject.split('.');
    return compiled.some((pattern) => {
      for (let i = 0; i < pattern.length; i++) {
        const p = pattern[i];
        if (p === '>') return i === pattern.length - 1 && tokens.length > i;
        if (i >= tokens.length) return false;
        if (p !== '*' && p !== tokens[i]) return false;
      }
      return tokens.length === pattern.length;
    });
  };
}

/** True when a pattern is well formed: non-empty tokens, `>` only last. */
export function isValidSubjectPattern(pattern: string): boolean {
  const tokens = pattern.split('.');
  return tokens.every((t, i) => t.length > 0 && !/\s/.test(t) && (t !== '>' || i === tokens.length - 1) && (t.length === 1 || !/[*>]/.test(t)));
}
