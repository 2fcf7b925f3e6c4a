import { createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../common/logger.js';
import type { Event } from '../common/proto.js';
import { lifecycleEvent } from '../common/event-publisher.js';
import { toCloudEvent } from './cloud-event.js';
import type { EventLog } from './event-log.js';

/** Type of the record published when an event could not be delivered to a webhook. */
export const DEAD_LETTER_TYPE = 'webhook.dead_letter';

/** Options of a WebhookForwarder. */
export interface WebhookForwarderOptions {
  log: EventLog;
  logger: Logger;
  /** Endpoint receiving POSTs of CloudEvents structured JSON. */
  url: string;
  /** Shared secret of the HMAC-SHA256 signature header. */
  secret: string;
  /** Subject patterns to forward (`release.*`, `run.>`); none means every event. */
  subjects?: readonly string[];
  /** Attributes the forwarded events must carry. @default {} */
  filter?: Readonly<Record<string, string>>;
  /** Durable consumer name, so forwarding resumes where it stopped. @default "webhook-" + a name derived from the URL */
  consumer?: string;
  /** Tries per event before a dead-letter record is written. @default 5 */
  maxAttempts?: number;
  /** Wait before the second try; doubled each time, with jitter. @default 500 */
  initialBackoffMs?: number;
  /** Longest wait between tries. @default 30000 */
  maxBackoffMs?: number;
  /** Deadline of one POST. @default 10000 */
  requestTimeoutMs?: number;
}

/** What is recorded (as a `webhook.dead_letter` event) for an event the endpoint never accepted. */
export interface DeadLetter {
  url: string;
  eventId: string;
  eventType: string;
  eventSequence: number;
  attempts: number;
  /** Last HTTP status, 0 when the endpoint could not be reached. */
  lastStatus: number;
  lastError: string;
}

/** HTTP statuses worth another try; other 4xx mean the request itself is refused, so the event goes to dead letter at once. */
const RETRY_STATUSES = new Set([
  // Request Timeout, Too Many Requests: the endpoint asks us to come back.
  408, 429,
]);

/** The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export function signWebhook(secret: string, body: string, unixSeconds: number): string {
  return `t=${unixSeconds},v1=${createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex')}`;
}

/**
 * Forwards events matching a pattern to an HTTP endpoint as CloudEvents
 * structured JSON (`Content-Type: application/cloudevents+json`), signed in
 * the `Stagemesh-Signature` header. Events go one at a time, in order,
 * through a durable consumer; an event is retried with exponential backoff
 * and, after the last try, recorded as a `webhook.dead_letter` event on the bus.
 */
export class WebhookForwarder {
  readonly #controller = new AbortController();
  #running?: Promise<void>;
  readonly #options: Required<Omit<WebhookForwarderOptions, 'consumer'>> & { consumer: string };

  private constructor(options: WebhookForwarderOptions) {
    if (!/^https?:\/\//.test(options.url)) throw new TypeError(`url: expected an http(s) URL, got "${options.url}"`);
    if (!options.secret) throw new TypeError('secret: a webhook needs a signing secret');
    this.#options = {
      subjects: [],
      filter: {},
      maxAttempts: 5,
      initialBackoffMs: 500,
      maxBackoffMs: 30_000,
      requestTimeoutMs: 10_000,
      consumer: `webhook-${options.url.replace(/^https?:\/\//, '').replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 48)}`,
      ...options,
    };
  }

  /** Starts forwarding; returns once the durable consumer is in place. */
  static async start(options: WebhookForwarderOptions): Promise<WebhookForwarder> {
    const forwarder = new WebhookForwarder(options);
    const { log, subjects, filter, consumer } = forwarder.#options;
    // The consumer only acknowledges after delivery or dead letter, so its ack timeout must outlast every retry.
    const ackTimeoutMs = forwarder.#options.maxAttempts * (forwarder.#options.maxBackoffMs + forwarder.#options.requestTimeoutMs);
    const events = await log.subscribe({ subjects, filter, start: { kind: 'new' }, consumer: { name: consumer, ackTimeoutMs, maxAckPending: 1 } }, forwarder.#controller.signal);
    forwarder.#running = forwarder.#loop(events);
    return forwarder;
  }

  async #loop(events: AsyncIterable<{ event: Event }>): Promise<void> {
    const { log, consumer, logger } = this.#options;
    try {
      for await (const { event } of events) {
        if (event.type === DEAD_LETTER_TYPE) {
          await log.ack(consumer, [event.sequence]);
          continue;
        }
        const deadLetter = await this.#deliver(event);
        if (deadLetter && !this.#controller.signal.aborted) {
          logger.warn({ ...deadLetter }, 'webhook gave up on an event; dead-letter record written');
          await log.append([lifecycleEvent(DEAD_LETTER_TYPE, 'stagemesh/event-bus', `webhook/${deadLetter.eventId}`, { url: deadLetter.url }, { ...deadLetter })]);
        }
        if (this.#controller.signal.aborted) return;
        await log.ack(consumer, [event.sequence]);
      }
    } catch (err) {
      if (!this.#controller.signal.aborted) logger.error({ err }, 'webhook forwarder stopped');
    }
  }

  /** POSTs one event until accepted; resolves to a dead-letter record when it never is. */
  async #deliver(event: Event): Promise<DeadLetter | undefined> {
    const { url, secret, maxAttempts, initialBackoffMs, maxBackoffMs, requestTimeoutMs } = this.#options;
    const body = JSON.stringify(toCloudEvent(event));
    let lastStatus = 0;
    let lastError = '';
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (this.#controller.signal.aborted) return undefined;
      try {
        const response = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/cloudevents+json; charset=utf-8',
            'stagemesh-signature': signWebhook(secret, body, Math.floor(Date.now() / 1000)),
            ...(event.headers.traceparent ? { traceparent: event.headers.traceparent } : {}),
          },
          body,
          signal: AbortSignal.any([this.#controller.signal, AbortSignal.timeout(requestTimeoutMs)]),
        });
        await response.arrayBuffer().catch(() => undefined);
        if (response.ok) return undefined;
        lastStatus = response.status;
        lastError = `HTTP ${response.status}`;
        if (response.status < 500 && !RETRY_STATUSES.has(response.status)) return { url, eventId: event.id, eventType: event.type, eventSequence: event.sequence, attempts: attempt, lastStatus, lastError };
      } catch (err) {
        lastStatus = 0;
        lastError = (err as Error).message;
      }
      if (attempt < maxAttempts) {
        const backoffMs = Math.min(maxBackoffMs, initialBackoffMs * 2 ** (attempt - 1));
        await sleep(backoffMs / 2 + Math.random() * (backoffMs / 2), undefined, { signal: this.#controller.signal }).catch(() => undefined);
      }
    }
    return { url, eventId: event.id, eventType: event.type, eventSequence: event.sequence, attempts: maxAttempts, lastStatus, lastError };
  }

  /** Stops forwarding (an event being retried is left unacknowledged and resent later); safe to call twice. */
  stop(): Promise<void> {
    this.#controller.abort();
    return this.#running ?? Promise.resolve();
  }
}
