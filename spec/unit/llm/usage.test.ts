import { approximateTokens, countedUsage } from '../../../lib/llm/usage';

describe('approximate usage', () => {
  it('is ceil(chars / 4), zero for nothing', () => {
    expect(approximateTokens(0)).toBe(0);
    expect(approximateTokens(1)).toBe(1);
    expect(approximateTokens(4)).toBe(1);
    expect(approximateTokens(5)).toBe(2);
  });

  it('adds up the counts, with no output for embeddings', () => {
    expect(countedUsage('embeddings', 2, 100)).toEqual({
      input_tokens: 2,
      output_tokens: 0,
      total_tokens: 2,
    });
    expect(countedUsage('completions', 1, 3)).toEqual({ input_tokens: 1, output_tokens: 3, total_tokens: 4 });
  });
});
