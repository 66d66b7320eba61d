import type { Endpoint, RecordedAnswer } from '../../lib/context';
import { Redactor } from '../../lib/log/pii';
import type { MetricsConfig } from '../../schemas/ai-metrics';

/** Longer than any key or token a redaction pattern looks for. */
const CUT_MARGIN = 512;

/** One message as logged: role and redacted text (OpenTelemetry GenAI `gen_ai.*.messages`). */
export interface LoggedMessage {
  role: string;
  content: string;
  finish_reason?: string;
}

/**
 * Prompt and answer logging, off by default. When on: sampled, cut to `max_chars` in all,
 * and redacted (keys and bearer tokens always, then the chosen PII kinds and the operator's
 * patterns). Redaction runs on the whole text, so a secret a stream split across chunks is
 * still found.
 */
export class ContentLog {
  private readonly redactor: Redactor;

  constructor(
    private readonly config: MetricsConfig['content'],
    private readonly random: () => number = Math.random,
  ) {
    this.redactor = new Redactor({ pii: config.pii, patterns: config.patterns });
  }

  get enabled(): boolean {
    return this.config.prompts || this.config.answers;
  }

  /** The log line's content fields for one request; empty when not sampled. */
  fields(
    endpoint: Endpoint | undefined,
    body: Record<string, unknown> | undefined,
    answer: RecordedAnswer | undefined,
  ): Record<string, LoggedMessage[]> {
    if (!this.enabled || this.random() >= this.config.sample_rate) return {};
    const out: Record<string, LoggedMessage[]> = {};
    let budget = this.config.max_chars;
    // Redacted before it is cut, with a margin, so a secret at the cut is still recognised.
    const take = (messages: LoggedMessage[]) =>
      messages.map((m) => {
        const text = this.redactor.apply(m.content.slice(0, budget + CUT_MARGIN));
        const cut = text.length > budget || m.content.length > budget + CUT_MARGIN;
        const kept = cut ? `${text.slice(0, budget)}…[cut]` : text;
        budget = Math.max(0, budget - text.length);
        return { ...m, content: kept };
      });
    if (this.config.prompts && body) out['gen_ai.input.messages'] = take(promptMessages(endpoint, body));
    if (this.config.answers && answer) out['gen_ai.output.messages'] = take(answerMessages(answer));
    return out;
  }
}

/** The request's messages as role and text (image and audio parts named, not included). */
export function promptMessages(
  endpoint: Endpoint | undefined,
  body: Record<string, unknown>,
): LoggedMessage[] {
  if (endpoint === 'chat.completions' && Array.isArray(body.messages)) {
    return body.messages.map((m) => {
      const message = (m ?? {}) as { role?: unknown; content?: unknown };
      return { role: String(message.role ?? 'user'), content: textOf(message.content) };
    });
  }
  const input = endpoint === 'embeddings' ? body.input : body.prompt;
  return [{ role: 'user', content: textOf(input) }];
}

function answerMessages(answer: RecordedAnswer): LoggedMessage[] {
  const choices = Array.isArray(answer.body.choices) ? answer.body.choices : [];
  return choices.map((c) => {
    const choice = (c ?? {}) as {
      message?: { role?: unknown; content?: unknown; tool_calls?: unknown };
      text?: unknown;
      finish_reason?: unknown;
    };
    const content =
      choice.message !== undefined
        ? textOf(choice.message.content) ||
          (choice.message.tool_calls ? JSON.stringify(choice.message.tool_calls) : '')
        : textOf(choice.text);
    return {
      role: String(choice.message?.role ?? 'assistant'),
      content,
      ...(typeof choice.finish_reason === 'string' ? { finish_reason: choice.finish_reason } : {}),
    };
  });
}

/** Text of a content value: a string, or the text parts of an array. */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return content == null ? '' : JSON.stringify(content);
  return content
    .map((part) => {
      const p = (part ?? {}) as { type?: unknown; text?: unknown };
      if (typeof part === 'string') return part;
      if (typeof p.text === 'string') return p.text;
      return `[${typeof p.type === 'string' ? p.type : 'part'}]`;
    })
    .join('\n');
}
