/**
 * Server-Sent Events, as the WHATWG HTML spec defines the wire format
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
 *
 * The parser is incremental: bytes may arrive split anywhere, even inside a UTF-8
 * character or between the CR and LF of one line end, and the events come out the same.
 */

export interface SseEvent {
  /** The `event:` field; absent means the default type `message`. */
  event?: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The `id:` field given in this event's block, if any. */
  id?: string;
  /** The `retry:` field (milliseconds), if any. */
  retry?: number;
}

const LF = 10;
const CR = 13;

export class SseParser {
  // `fatal: false` turns invalid UTF-8 into U+FFFD as browsers do; the BOM is dropped.
  private readonly decoder = new TextDecoder('utf-8');
  /** Decoded text not yet ended by a line end. */
  private pending = '';
  /** The previous chunk ended with CR: a LF at the start of the next one belongs to it. */
  private afterCR = false;
  private data: string[] = [];
  private event: string | undefined;
  private id: string | undefined;
  private retry: number | undefined;

  /** Characters held while waiting for a line end; lets callers bound a stream that never ends a line. */
  get pendingLength(): number {
    return this.pending.length;
  }

  /** Feeds the next piece of the stream; returns the events it completed. */
  push(chunk: Uint8Array | string): SseEvent[] {
    const text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    return this.scan(text);
  }

  /** The stream ended. Per the spec an event without its closing blank line is dropped. */
  end(): SseEvent[] {
    const events = this.scan(this.decoder.decode());
    this.pending = '';
    this.afterCR = false;
    this.resetEvent();
    return events;
  }

  private scan(text: string): SseEvent[] {
    const events: SseEvent[] = [];
    let start = 0;
    if (this.afterCR && text.length > 0) {
      if (text.charCodeAt(0) === LF) start = 1;
      this.afterCR = false;
    }
    const held = this.pending.length;
    const buf = held > 0 ? this.pending + text.slice(start) : text.slice(start);
    let lineStart = 0;
    // The held text has no line end in it: scan only what is new, so a long line costs O(n).
    for (let i = held; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== LF && c !== CR) continue;
      const event = this.line(buf.slice(lineStart, i));
      if (event) events.push(event);
      if (c === CR) {
        if (i + 1 === buf.length) this.afterCR = true;
        else if (buf.charCodeAt(i + 1) === LF) i++;
      }
      lineStart = i + 1;
    }
    this.pending = buf.slice(lineStart);
    return events;
  }

  private line(line: string): SseEvent | undefined {
    if (line.length === 0) return this.dispatch();
    if (line.charCodeAt(0) === 58 /* ':' */) return undefined; // comment, e.g. a keep-alive
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32 /* ' ' */) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      // unknown fields are ignored, as the spec says
    }
    return undefined;
  }

  private dispatch(): SseEvent | undefined {
    // A block without data lines (only `event:` or `id:`) dispatches nothing, as in browsers.
    if (this.data.length === 0) {
      this.resetEvent();
      return undefined;
    }
    const event: SseEvent = { data: this.data.join('\n') };
    if (this.event !== undefined && this.event !== '') event.event = this.event;
    if (this.id !== undefined) event.id = this.id;
    if (this.retry !== undefined) event.retry = this.retry;
    this.resetEvent();
    return event;
  }

  private resetEvent(): void {
    this.data = [];
    this.event = undefined;
    this.id = undefined;
    this.retry = undefined;
  }
}

/** Parses a whole transcript at once (tests, fixtures, cache replay). */
export function parseSse(text: string | Uint8Array): SseEvent[] {
  const parser = new SseParser();
  return [...parser.push(text), ...parser.end()];
}

/** One event on the wire, ending with the blank line that dispatches it. */
export function serializeSse(event: SseEvent): string {
  let out = '';
  if (event.event !== undefined) out += `event: ${event.event}\n`;
  if (event.id !== undefined) out += `id: ${event.id}\n`;
  if (event.retry !== undefined) out += `retry: ${event.retry}\n`;
  for (const line of event.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/** A comment line: ignored by clients, keeps idle proxies from closing the connection. */
export function serializeSseComment(text: string): string {
  return `: ${text.replace(/\r\n|\r|\n/g, ' ')}\n\n`;
}
