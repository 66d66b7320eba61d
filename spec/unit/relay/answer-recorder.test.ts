import { readFileSync } from 'node:fs';
import path from 'node:path';
import { serializeSse } from '../../../lib/llm/sse';
import { AnswerRecorder } from '../../../lib/relay/answer-recorder';

const FIXTURES = path.resolve(__dirname, '../../fixtures/providers/openai');
const chunk = (data: unknown) => serializeSse({ data: JSON.stringify(data) });

describe('AnswerRecorder', () => {
  it('keeps a JSON answer as sent', () => {
    const r = new AnswerRecorder(1000);
    r.json({ object: 'chat.completion', choices: [] }, 50);
    expect(r.result()).toEqual({ body: { object: 'chat.completion', choices: [] }, bytes: 50 });
  });

  it('assembles a real OpenAI stream (with usage) into the equivalent chat.completion', () => {
    const text = readFileSync(path.join(FIXTURES, 'chat-completion-stream-include-usage.sse'), 'utf8');
    const r = new AnswerRecorder(1 << 20);
    // Split at odd places: the recorder gets what the relay writes, event by event or not.
    for (let i = 0; i < text.length; i += 7) r.stream(text.slice(i, i + 7));
    const answer = r.result()!;
    expect(answer.bytes).toBe(Buffer.byteLength(text));
    expect(answer.body).toMatchObject({
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant' }, finish_reason: 'stop' }],
    });
    expect(answer.body.usage).toMatchObject({ total_tokens: expect.any(Number) });
    const content = (answer.body.choices as Array<{ message: { content: string } }>)[0]!.message.content;
    expect(content.length).toBeGreaterThan(0);
  });

  it('merges tool call deltas by index', () => {
    const r = new AnswerRecorder(1 << 20);
    const base = { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm' };
    r.stream(
      chunk({
        ...base,
        choices: [
          {
            index: 0,
            delta: {
              role: 'assistant',
              tool_calls: [
                { index: 0, id: 'call_1', type: 'function', function: { name: 'get_', arguments: '' } },
              ],
            },
          },
        ],
      }),
    );
    r.stream(
      chunk({
        ...base,
        choices: [
          {
            index: 0,
            delta: { tool_calls: [{ index: 0, function: { name: 'weather', arguments: '{"ci' } }] },
          },
        ],
      }),
    );
    r.stream(
      chunk({
        ...base,
        choices: [
          { index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: 'ty":"Paris"}' } }] } },
        ],
      }),
    );
    r.stream(chunk({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] }));
    r.stream(serializeSse({ data: '[DONE]' }));
    expect(r.result()!.body).toEqual({
      id: 'c1',
      created: 1,
      model: 'm',
      object: 'chat.completion',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: null,
            tool_calls: [
              {
                id: 'call_1',
                type: 'function',
                function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
              },
            ],
          },
          logprobs: null,
          finish_reason: 'tool_calls',
        },
      ],
    });
  });

  it('keeps nothing past maxBytes', () => {
    const r = new AnswerRecorder(100);
    r.stream(
      chunk({
        object: 'chat.completion.chunk',
        choices: [{ index: 0, delta: { content: 'x'.repeat(200) } }],
      }),
    );
    expect(r.result()).toBeUndefined();
    const j = new AnswerRecorder(100);
    j.json({ a: 1 }, 101);
    expect(j.result()).toBeUndefined();
  });

  it('records nothing when nothing came', () => {
    expect(new AnswerRecorder(100).result()).toBeUndefined();
  });
});
