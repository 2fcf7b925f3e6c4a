import type { Event } from '../common/proto.js';

/** A CloudEvents 1.0 event in structured JSON mode. */
export interface CloudEventJson {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject?: string;
  time?: string;
  datacontenttype: string;
  data: unknown;
  /** Extension attributes: the bus sequence, the ordering key, filterable attributes and headers such as traceparent. */
  [extension: string]: unknown;
}

/**
 * An event as CloudEvents structured JSON (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md).
 * Extension names must be lower-case alphanumerics, so attributes become
 * `stagemesh<name>` without separators (run_id → `stagemeshrunid`) and
 * `traceparent` / `tracestate` follow the distributed-tracing extension.
 */
export function toCloudEvent(event: Event): CloudEventJson {
  const json: CloudEventJson = {
    specversion: '1.0',
    id: event.id,
    source: event.source || 'stagemesh',
    type: event.type,
    ...(event.subject ? { subject: event.subject } : {}),
    ...(event.time ? { time: event.time.toISOString() } : {}),
    datacontenttype: event.datacontenttype || 'application/json',
    data: event.data ?? {},
    stagemeshsequence: event.sequence,
  };
  if (event.key) json.stagemeshkey = event.key;
  for (const [name, value] of Object.entries(event.attributes)) json[`stagemesh${name.toLowerCase().replace(/[^a-z0-9]/g, '')}`] = value;
  for (const [name, value] of Object.entries(event.headers)) {
    const extension = name.toLowerCase().replace(/[^a-z0-9]/g, '');
    if (extension && !(extension in json)) json[extension] = value;
  }
  return json;
}
