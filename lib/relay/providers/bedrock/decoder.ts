import { EventStreamCodec, type Message } from '@smithy/eventstream-codec';
import { fromUtf8, toUtf8 } from '@smithy/util-utf8';
import { GatewayError } from '../../../errors';
import type { SseEvent } from '../../../llm/sse';
import type { EventDecoder } from '../index';
import { scrubAws } from './error';

/** Prelude (total length, headers length, prelude CRC) and message CRC. */
const MESSAGE_OVERHEAD = 16;

/** The event name an exception or error message becomes; no Converse event has this name. */
export const EXCEPTION_EVENT = 'exception';

/**
 * Splits an AWS event stream (application/vnd.amazon.eventstream) into events: each message
 * becomes `{event: <:event-type>, data: <payload text>}`. Messages may arrive split over any
 * number of chunks; the bytes of an unfinished one are held (`pendingLength`, which the relay
 * bounds, so a corrupt length cannot make it wait for gigabytes). An exception or error
 * message becomes an `exception` event whose data is `{type, message}`, for the translator to
 * report after the events before it. A checksum failure throws AIGW_STREAM_BROKEN.
 */
export class AwsEventStreamDecoder implements EventDecoder {
  private readonly codec = new EventStreamCodec(toUtf8, fromUtf8);
  private buffer: Uint8Array = new Uint8Array(0);

  get pendingLength(): number {
    return this.buffer.length;
  }

  push(chunk: Uint8Array): SseEvent[] {
    this.buffer = this.buffer.length === 0 ? chunk : concat(this.buffer, chunk);
    const events: SseEvent[] = [];
    while (this.buffer.length >= 4) {
      const view = new DataView(this.buffer.buffer, this.buffer.byteOffset, this.buffer.byteLength);
      const total = view.getUint32(0, false);
      if (total < MESSAGE_OVERHEAD) throw broken(`a message length of ${total} bytes`);
      if (this.buffer.length < total) break;
      // A copy: the codec reads the message through its own view of the bytes.
      const frame = this.buffer.slice(0, total);
      this.buffer = this.buffer.subarray(total);
      events.push(toEvent(this.decode(frame)));
    }
    return events;
  }

  end(): SseEvent[] {
    const left = this.buffer.length;
    this.buffer = new Uint8Array(0);
    if (left > 0) throw broken(`the stream ended inside a message (${left} bytes)`);
    return [];
  }

  private decode(frame: Uint8Array): Message {
    try {
      return this.codec.decode(frame);
    } catch (err) {
      // The codec's message names the checksums or lengths that disagree.
      throw broken(err instanceof Error ? err.message : 'an unreadable message');
    }
  }
}

function toEvent(message: Message): SseEvent {
  const header = (name: string): string | undefined => {
    const value = message.headers[name];
    return value?.type === 'string' ? value.value : undefined;
  };
  const payload = toUtf8(message.body);
  const kind = header(':message-type');
  if (kind === 'event') {
    const type = header(':event-type');
    if (!type) throw broken('an event without :event-type');
    return { event: type, data: payload };
  }
  if (kind === 'exception' || kind === 'error') {
    const type = (kind === 'exception' ? header(':exception-type') : header(':error-code')) ?? 'unknown';
    const text = kind === 'exception' ? messageOf(payload) : header(':error-message');
    return {
      event: EXCEPTION_EVENT,
      data: JSON.stringify({ type, message: scrubAws(text ?? 'no message') }),
    };
  }
  throw broken(`a message of type ${JSON.stringify(kind ?? null)}`);
}

function messageOf(payload: string): string | undefined {
  try {
    const json: unknown = JSON.parse(payload);
    if (json !== null && typeof json === 'object') {
      const { message, Message } = json as Record<string, unknown>;
      if (typeof message === 'string') return message;
      if (typeof Message === 'string') return Message;
    }
  } catch {
    // not JSON: the payload is the message
  }
  return payload === '' ? undefined : payload;
}

function broken(what: string): GatewayError {
  return new GatewayError('AIGW_STREAM_BROKEN', `the provider sent a broken event stream: ${what}`);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
