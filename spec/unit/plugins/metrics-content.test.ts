import { ContentLog } from '../../../plugins/ai-metrics/content';
import { metricsConfig } from '../../../schemas/ai-metrics';

const config = (content: Record<string, unknown>) => metricsConfig.validate({ content }).config.content;
const body = (text: string) => ({
  messages: [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: text },
  ],
});
const answer = (text: string) => ({
  body: { choices: [{ message: { role: 'assistant', content: text }, finish_reason: 'stop' }] },
  bytes: 1,
});

describe('ContentLog', () => {
  it('logs nothing unless asked', () => {
    expect(new ContentLog(config({})).fields('chat.completions', body('hi'), answer('yo'))).toEqual({});
  });

  it('samples: rate 0 logs nothing, rate 1 everything', () => {
    const none = new ContentLog(config({ prompts: true, sample_rate: 0 }), () => 0);
    expect(none.fields('chat.completions', body('hi'), undefined)).toEqual({});
    const all = new ContentLog(config({ prompts: true, answers: true, sample_rate: 1 }), () => 0.999);
    expect(all.fields('chat.completions', body('hi'), answer('yo'))).toEqual({
      'gen_ai.input.messages': [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hi' },
      ],
      'gen_ai.output.messages': [{ role: 'assistant', content: 'yo', finish_reason: 'stop' }],
    });
  });

  it('cuts to max_chars in all, and still removes a key that straddles the cut', () => {
    const key = 'sk-proj-StraddlingTheCut0123456789';
    const log = new ContentLog(config({ prompts: true, max_chars: 30 }));
    const [system, user] = log.fields('chat.completions', body(`${'x'.repeat(15)} ${key} tail`), undefined)[
      'gen_ai.input.messages'
    ]!;
    expect(system!.content).toBe('be brief');
    expect(user!.content).toMatch(/…\[cut\]$/);
    expect(user!.content.length).toBeLessThanOrEqual(22 + '…[cut]'.length);
    expect(user!.content).not.toContain('StraddlingTheCut');
  });

  it('names image parts without their data, and takes embeddings input', () => {
    const log = new ContentLog(config({ prompts: true }));
    const vision = {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is this' },
            { type: 'image_url', image_url: { url: 'data:...' } },
          ],
        },
      ],
    };
    expect(log.fields('chat.completions', vision, undefined)['gen_ai.input.messages']).toEqual([
      { role: 'user', content: 'what is this\n[image_url]' },
    ]);
    expect(log.fields('embeddings', { input: 'embed me' }, undefined)['gen_ai.input.messages']).toEqual([
      { role: 'user', content: 'embed me' },
    ]);
  });

  it('rejects a pattern that matches the empty string, naming the field', () => {
    expect(() => metricsConfig.validate({ content: { patterns: [{ name: 'x', pattern: 'a*' }] } })).toThrow(
      /content\.patterns\[0\]\.pattern: matches the empty string/,
    );
    expect(() => metricsConfig.validate({ content: { patterns: [{ name: 'x', pattern: '(' }] } })).toThrow(
      /content\.patterns\[0\]\.pattern: is not a valid regular expression/,
    );
    expect(() => metricsConfig.validate({ log_sink: { type: 'http' } })).toThrow(/log_sink\.url: required/);
  });
});
