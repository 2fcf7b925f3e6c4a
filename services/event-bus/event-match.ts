import type { Event } from '../common/proto.js';

/** Looks a match key up: an attribute, else a (dotted) path into the event's data. */
function valueOf(event: Event, key: string): unknown {
  if (key in event.attributes) return event.attributes[key];
  let value: unknown = event.data;
  for (const part of key.split('.')) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/**
 * True when every `match` entry equals the event's value, looked up in its
 * attributes and then in its data (`artifact.name` is a path into data).
 * Values compare as strings, so `3` matches `"3"`. Used by `wait-event`
 * stages and pipeline triggers.
 */
export function eventMatches(event: Event, match: Readonly<Record<string, unknown>>): boolean {
  return Object.entries(match).every(([key, expected]) => {
    const actual = valueOf(event, key);
    return actual !== undefined && String(actual) === String(expected);
  });
}
