import { jsonAnswer, splitContent, sseAnswer } from '../../../lib/cache/replay';
import { parseSse } from '../../../lib/llm/sse';

const answer = {
  id: 'chatcmpl-old',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-mini-2024-07-18',
  system_fingerprint: 'fp_x',
  choices: [
    {
      index: 0,
      message: { role: 'assistant', content: 'The answer is forty two, as everyone knows.' },
      logprobs: null,
      finish_reason: 'stop',
    },
  ],
  usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 },
};

describe('splitContent', () => {
  it('splits short texts by word and never loses a character', () => {
    expect(splitContent('Hello there friend')).toEqual(['Hello ', 'there ', 'friend']);
    const long = 'lorem ipsum '.repeat(5000);
    const pieces = splitContent(long);
    expect(pieces.join('')).toBe(long);
    expect(pieces.length).toBeLessThanOrEqual(70);
  });

  it('never cuts a surrogate pair, even without spaces', () => {
    const text = '🚀'.repeat(500);
    for (const piece of splitContent(text)) expect(piece).toMatch(/^(?:🚀)+$/u);
  });
});

describe('jsonAnswer', () => {
  it('keeps choices, model and usage, with a fresh id and time', () => {
    const out = jsonAnswer(answer, { created: 99 });
    expect(out).toMatchObject({
      object: 'chat.completion',
      created: 99,
      model: answer.model,
      choices: answer.choices,
      usage: answer.usage,
    });
    expect(out.id).not.toBe('chatcmpl-old');
  });
});

describe('sseAnswer', () => {
  it('is a well-formed OpenAI stream: role, content chunks, finish, usage, [DONE]', () => {
    const events = parseSse(sseAnswer(answer, { created: 5, includeUsage: true }));
    expect(events.at(-1)!.data).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(text).toBe(answer.choices[0]!.message.content);
    expect(chunks.filter((c) => c.choices[0]?.delta?.content).length).toBeGreaterThan(2);
    expect(chunks.at(-2).choices[0]).toEqual({ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' });
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: answer.usage });
    for (const c of chunks)
      expect(c).toMatchObject({
        object: 'chat.completion.chunk',
        created: 5,
        model: answer.model,
        system_fingerprint: 'fp_x',
      });
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
  });

  it('replays tool calls with their arguments and finish reason', () => {
    const calls = [
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    ];
    const withTools = {
      ...answer,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: null, tool_calls: calls },
          finish_reason: 'tool_calls',
        },
      ],
    };
    const chunks = parseSse(sseAnswer(withTools, { created: 5, includeUsage: false }))
      .slice(0, -1)
      .map((e) => JSON.parse(e.data));
    expect(chunks.find((c) => c.choices[0].delta.tool_calls).choices[0].delta.tool_calls).toEqual([
      { index: 0, ...calls[0] },
    ]);
    expect(chunks.at(-1).choices[0].finish_reason).toBe('tool_calls');
    expect(chunks.every((c) => !('usage' in c))).toBe(true);
  });
});
