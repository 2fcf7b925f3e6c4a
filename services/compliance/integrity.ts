/**
 * Integrity scanners over single strings: plain-text secrets and the Unicode
 * tricks of Trojan Source (https://trojansource.codes, CVE-2021-42574).
 */

/** Bidirectional control characters: embeddings, overrides, isolates and marks. */
const BIDI = /[\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/u;
/** Characters that render as nothing: zero-width space/joiners, word joiner, invisible operators, BOM, soft hyphen, tags. */
const INVISIBLE = /[\u200B-\u200D\u2060-\u2064\uFEFF\u00AD\u034F\u180E\u{E0000}-\u{E007F}]/u;
const NON_ASCII = /[^\x00-\x7F]/;

/** The first character of a kind in `text`, as `U+202E`, or undefined. */
function codePointOf(text: string, pattern: RegExp): string | undefined {
  const match = pattern.exec(text);
  return match ? `U+${match[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}` : undefined;
}

/** What is wrong with the characters of a string, if anything. */
export interface UnicodeProblem {
  kind: 'bidi' | 'invisible' | 'non-nfc';
  /** The offending code point (`U+202E`), or '' for non-NFC text. */
  codePoint: string;
}

/** Finds bidirectional controls, invisible characters and text not in normal form C. */
export function unicodeProblems(text: string): UnicodeProblem[] {
  if (!NON_ASCII.test(text)) return [];
  const problems: UnicodeProblem[] = [];
  const bidi = codePointOf(text, BIDI);
  if (bidi) problems.push({ kind: 'bidi', codePoint: bidi });
  const invisible = codePointOf(text, INVISIBLE);
  if (invisible) problems.push({ kind: 'invisible', codePoint: invisible });
  if (text.normalize('NFC') !== text) problems.push({ kind: 'non-nfc', codePoint: '' });
  return problems;
}

/** Token formats that are secrets wherever they appear. */
const TOKEN_PATTERNS: readonly { name: string; pattern: RegExp }[] = [
  { name: 'an AWS access key id', pattern: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/ },
  { name: 'a GitHub token', pattern: /\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b/ },
  { name: 'a Slack token', pattern: /\bxox[abprs]-[A-Za-z0-9-]{10,}/ },
  { name: 'a Stripe live key', pattern: /\b[sr]k_live_[0-9A-Za-z]{16,}/ },
  { name: 'a Google API key', pattern: /\bAIza[0-9A-Za-z_-]{35}\b/ },
  { name: 'a private key', pattern: /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/ },
  { name: 'a JSON web token', pattern: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/ },
];

/** One pass over the text for every token format (most strings hold none). */
const ANY_TOKEN = new RegExp(TOKEN_PATTERNS.map((t) => t.pattern.source).join('|'));
const SECRET_WORDS = '(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret)';
/** A literal value (not `$VAR`, `${{ … }}` or `<placeholder>`) of at least four characters. */
const LITERAL = `(["']?)(?![$<{*])([^\\s"'&|;]{4,})\\1`;
/** `password=hunter2`, `api_key: xyz`, `--token abc`, `-password abc`. */
const ASSIGNMENT = new RegExp(`(?:(?:^|[^A-Za-z0-9_])${SECRET_WORDS}\\s*[=:]\\s*|(?:^|\\s)--?${SECRET_WORDS}\\s+)${LITERAL}`, 'i');
/** The cheap test before ASSIGNMENT. */
const SECRET_WORD = new RegExp(SECRET_WORDS, 'i');
/** Credentials in a URL: `https://user:pass@host`. */
const URL_CREDENTIALS = /\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:(?![$<{])[^/\s@]+@/i;
/** Names of env keys and headers that hold secrets. */
const SECRET_KEY = /(?:^|_|-)(?:password|passwd|secret|token|api_?key|private_?key|credentials?|authorization)$/i;
/** Values that refer to a secret instead of carrying it, after an optional auth scheme. */
const REFERENCE = /^\s*(?:(?:Bearer|Basic|Token)\s+)?(?:\$\{\{[^}]*\}\}|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|<[^>]*>|\*+|)\s*$/i;

/**
 * Describes the plain-text secret in `text` ("an AWS access key id"), or
 * returns undefined. `key` is the env variable or header the text is the
 * value of, if any: a literal value under a secret-looking key counts too.
 * For `prose` (descriptions) only unmistakable token formats count, so that
 * "rotates the token store" is not a finding.
 */
export function findSecret(text: string, key = '', prose = false): string | undefined {
  if (ANY_TOKEN.test(text)) return TOKEN_PATTERNS.find(({ pattern }) => pattern.test(text))!.name;
  if (text.includes('@') && URL_CREDENTIALS.test(text)) return 'a password in a URL';
  if (prose) return undefined;
  if (key && SECRET_KEY.test(key) && !REFERENCE.test(text)) return `a literal value for ${key}`;
  if (SECRET_WORD.test(text) && ASSIGNMENT.test(text)) return 'a password or token assigned in the text';
  return undefined;
}
