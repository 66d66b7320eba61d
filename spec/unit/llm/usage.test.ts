import { approximatePromptTokens, approximateTokens, countedUsage } from '../../../lib/llm/usage';

describe('approximate usage', () => {
  it('is ceil(chars / 4), zero for nothing', () => {
    expect(approximateTokens(0)).toBe(0);
    expect(approximateTokens(1)).toBe(1);
    expect(approximateTokens(4)).toBe(1);
    expect(approximateTokens(5)).toBe(2);
  });

  it('reads chat messages: strings, text parts and tool-call arguments, not images or roles', () => {
    const body = {
      messages: [
        { role: 'system', content: 'abcd' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'efgh' },
            { type: 'image_url', image_url: { url: 'https://example.com/a-very-long-url.png' } },
          ],
        },
        { role: 'assistant', content: null, tool_calls: [{ function: { name: 'f', arguments: '{"x":1}' } }] },
        null,
      ],
    };
    expect(approximatePromptTokens('chat.completions', body)).toBe(approximateTokens(4 + 4 + 7));
  });

  it('reads prompt and input as a string, strings or token ids', () => {
    expect(approximatePromptTokens('completions', { prompt: 'abcdefgh' })).toBe(2);
    expect(approximatePromptTokens('completions', { prompt: ['abcd', 'efgh'] })).toBe(2);
    expect(approximatePromptTokens('embeddings', { input: [1, 2, 3] })).toBe(3);
    expect(approximatePromptTokens('embeddings', { input: [[1, 2], [3]] })).toBe(3);
    expect(approximatePromptTokens('embeddings', {})).toBe(0);
    expect(approximatePromptTokens('chat.completions', undefined)).toBe(0);
  });

  it('counts no output for embeddings', () => {
    expect(countedUsage('embeddings', { input: 'abcdefgh' }, 100)).toEqual({
      input_tokens: 2,
      output_tokens: 0,
      total_tokens: 2,
    });
    expect(countedUsage('completions', { prompt: 'abcd' }, 9)).toEqual({
      input_tokens: 1,
      output_tokens: 3,
      total_tokens: 4,
    });
  });
});
