import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Endpoint, RelayOutcome } from '../../../lib/context';
import { AnswerRecorder } from '../../../lib/relay/answer-recorder';
import {
  CHECK_WEIGHTS,
  checkAnswer,
  MIN_LANGUAGE_LETTERS,
  plainlyEnglish,
  type QualityVerdict,
} from '../../../plugins/ai-router/quality';

type Body = Record<string, unknown>;

const OPENAI = path.resolve(__dirname, '../../fixtures/providers/openai');
const QUALITY = path.resolve(__dirname, '../../fixtures/quality');
const fixture = (dir: string, name: string): Body => JSON.parse(readFileSync(path.join(dir, name), 'utf8'));

const OUTCOME: RelayOutcome = {
  target: 'openai-mini',
  provider: 'openai',
  model: 'gpt-4o-mini',
  status: 200,
  stream: false,
  started_at: 1744190845000,
  bytes_out: 800,
  end: 'complete',
};

/** OpenAI's real chat answer with its first choice's message and finish_reason replaced. */
function answer(message: Body, finishReason = 'stop'): Body {
  const body = fixture(OPENAI, 'chat-completion.json');
  const [choice] = body.choices as Body[];
  return {
    ...body,
    choices: [
      {
        ...choice,
        message: { role: 'assistant', refusal: null, annotations: [], ...message },
        finish_reason: finishReason,
      },
    ],
  };
}
const says = (content: string | null, finishReason = 'stop') => answer({ content }, finishReason);
const user = (content: unknown): Body => ({ role: 'user', content });
const ask = (prompt: string, extra: Body = {}): Body => ({
  model: 'gpt-4o-mini',
  messages: [user(prompt)],
  ...extra,
});

function check(
  request: Body | undefined,
  body: Body | undefined,
  outcome: Partial<RelayOutcome> = {},
  endpoint: Endpoint = 'chat.completions',
): QualityVerdict | undefined {
  return checkAnswer({ endpoint, request, answer: body, outcome: { ...OUTCOME, ...outcome } });
}
const failed = (request: Body | undefined, body: Body | undefined) => check(request, body)?.failed;

const PASS: QualityVerdict = { score: 1, failed: [] };

describe('checkAnswer: real OpenAI answers', () => {
  it('passes the recorded chat completion', () => {
    expect(check(ask('Hello!'), fixture(OPENAI, 'chat-completion.json'))).toEqual(PASS);
  });

  it('passes a real stream assembled by the answer recorder', () => {
    const recorder = new AnswerRecorder(1 << 20);
    recorder.stream(readFileSync(path.join(OPENAI, 'chat-completion-stream-include-usage.sse'), 'utf8'));
    expect(check(ask('Say hi'), recorder.result()!.body, { stream: true })).toEqual(PASS);
  });

  it('passes real parallel tool calls that match their declarations', () => {
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          parameters: {
            type: 'object',
            properties: {
              city: { type: 'string' },
              unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
            },
            required: ['city'],
            additionalProperties: false,
          },
        },
      },
      {
        type: 'function',
        function: {
          name: 'get_time',
          parameters: {
            type: 'object',
            properties: { timezone: { type: 'string' } },
            required: ['timezone'],
          },
        },
      },
    ];
    expect(check(ask('Weather and time in Paris?', { tools }), fixture(QUALITY, 'tool-calls.json'))).toEqual(
      PASS,
    );
  });

  it('counts a structured-outputs refusal as a refusal, not as empty', () => {
    expect(check(ask('…'), fixture(QUALITY, 'structured-refusal.json'))).toEqual({
      score: CHECK_WEIGHTS.refusal,
      failed: ['refusal'],
    });
  });

  it('counts an answer cut by max_tokens as truncated', () => {
    expect(check(ask('Tell me about the French Revolution'), fixture(QUALITY, 'truncated.json'))).toEqual({
      score: 0.5,
      failed: ['truncated'],
    });
  });
});

describe('checkAnswer: what is judged', () => {
  it.each<Endpoint>(['completions', 'embeddings', 'models'])('does not judge %s', (endpoint) => {
    const body =
      endpoint === 'completions' ? fixture(OPENAI, 'completion.json') : fixture(OPENAI, 'embeddings.json');
    expect(check(ask('x'), body, {}, endpoint)).toBeUndefined();
    expect(check(ask('x'), undefined, { end: 'stream_broken' }, endpoint)).toBeUndefined();
  });

  it.each<RelayOutcome['end']>(['upstream_error', 'timeout', 'client_aborted', 'rejected'])(
    'does not judge an exchange that ended %s',
    (end) => {
      expect(check(ask('x'), undefined, { end, status: 502 })).toBeUndefined();
    },
  );

  it('does not judge an error answer relayed as complete', () => {
    expect(check(ask('x'), fixture(OPENAI, 'error-429-rate-limit.json'), { status: 429 })).toBeUndefined();
  });

  it('scores a broken stream 0, whatever the status sent', () => {
    expect(check(ask('x'), undefined, { end: 'stream_broken', status: 200, stream: true })).toEqual({
      score: 0,
      failed: ['broken_stream'],
    });
  });

  it('judges a complete answer that was not kept on its end only', () => {
    expect(check(ask('x'), undefined)).toEqual(PASS);
  });

  it('takes the lowest weight when several checks fail', () => {
    const request = ask('List three colours', { response_format: { type: 'json_object' } });
    expect(check(request, says('{"colours": ["red", "green"', 'length'))).toEqual({
      score: 0,
      failed: ['truncated', 'invalid_json'],
    });
  });

  it.each([
    ['no choices', { object: 'chat.completion', choices: [] }],
    ['choices not a list', { object: 'chat.completion', choices: 'nope' }],
    [
      'a choice without message',
      { object: 'chat.completion', choices: [{ index: 0, finish_reason: 'stop' }] },
    ],
    ['a null choice', { object: 'chat.completion', choices: [null] }],
  ])('counts a malformed answer (%s) as empty', (_name, body) => {
    expect(failed(ask('x'), body)).toEqual(['empty']);
  });

  it('takes a missing or malformed request', () => {
    expect(check(undefined, says('Hello'))).toEqual(PASS);
    expect(check({ messages: 'nope', tools: 'nope', response_format: 'json' }, says('Hello'))).toEqual(PASS);
    expect(check({ messages: [null, 3, user(42)] }, says('Hello'))).toEqual(PASS);
  });
});

describe('empty', () => {
  it.each([
    ['an empty string', ''],
    ['whitespace', ' \n\t '],
    ['null content', null],
  ])('fails %s without tool calls', (_name, content) => {
    expect(check(ask('x'), says(content))).toEqual({ score: 0, failed: ['empty'] });
  });

  it('passes empty content with a tool call', () => {
    const tools = [{ type: 'function', function: { name: 'ping' } }];
    const body = answer(
      {
        content: '',
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'ping', arguments: '{}' } }],
      },
      'tool_calls',
    );
    expect(check(ask('ping', { tools }), body)).toEqual(PASS);
  });
});

describe('refusal', () => {
  it.each([
    ['en', "I'm sorry, but I can't help with that."],
    ['en', 'I’m sorry, but I cannot assist with that request.'],
    ['en', "I can't help with that."],
    ['en', 'Sorry, I am unable to provide that information.'],
    ['en', 'As an AI language model, I cannot provide instructions for that.'],
    ['fr', 'Je suis désolé, mais je ne peux pas vous aider avec cette demande.'],
    ['fr', 'Désolée, je ne suis pas en mesure de répondre à cette question.'],
    ['fr', "En tant qu'IA, je ne peux pas donner ce genre de conseil."],
    ['de', 'Es tut mir leid, aber ich kann Ihnen dabei nicht helfen.'],
    ['de', 'Leider kann ich diese Anfrage nicht erfüllen.'],
    ['de', 'Als KI kann ich dir dabei nicht helfen.'],
    ['es', 'Lo siento, pero no puedo ayudarte con eso.'],
    ['es', 'Como IA, no puedo dar consejos médicos personalizados.'],
    ['it', 'Mi dispiace, ma non posso aiutarti con questa richiesta.'],
    ['it', "Come un'IA, non posso fornire questo tipo di contenuto."],
    ['pt', 'Desculpe, mas não posso ajudar com isso.'],
    ['pt', 'Sinto muito, não consigo atender a esse pedido.'],
  ])('fails a clear refusal (%s): %s', (_lang, content) => {
    expect(check(ask('…'), says(content))).toEqual({ score: CHECK_WEIGHTS.refusal, failed: ['refusal'] });
  });

  it('fails finish_reason content_filter', () => {
    expect(failed(ask('…'), says('', 'content_filter'))).toEqual(['empty', 'refusal']);
    expect(failed(ask('…'), says('Once upon a', 'content_filter'))).toEqual(['refusal']);
  });

  it.each([
    ["I'm sorry to hear about your cat. Here are a few things you can try to help her eat again."],
    ["I'm sorry, but I can't find any bug in this function: it returns the right value for every input."],
    ['The library says: "I can\'t help with that" when the input is invalid, so check the input first.'],
    ['You asked why the bot replied "I’m sorry, but I cannot assist with that". It means the filter fired.'],
    ['Here is the summary. Note that I cannot verify the figures, as I have no access to the source.'],
    ['As an AI, I don’t have personal opinions, but here are the main arguments on each side.'],
    ["Je ne peux pas m'empêcher de remarquer que la fonction est appelée deux fois."],
    ['Ich kann dir zeigen, wie du das selbst machst: öffne die Einstellungen und wähle Konto.'],
    ['No puedo creer lo rápido que pasa el tiempo: aquí tienes el resumen del trimestre.'],
    ['Non posso che consigliarti di usare la versione più recente: ecco come aggiornarla.'],
    ['Não posso deixar de mencionar que o prazo termina amanhã; eis o plano.'],
  ])('passes a non-refusal: %s', (content) => {
    expect(failed(ask('…'), says(content))).toEqual([]);
  });

  it('passes a long answer that opens with an apology and goes on to help', () => {
    const content = `I'm sorry, but I can't help with the exact wording you asked for. ${'Here is a safer version that keeps your meaning and reads well. '.repeat(12)}`;
    expect(failed(ask('…'), says(content))).toEqual([]);
  });
});

describe('invalid_json', () => {
  const jsonMode = (prompt = 'Give me the user as JSON') =>
    ask(prompt, { response_format: { type: 'json_object' } });

  it('passes a JSON object in JSON mode', () => {
    expect(check(jsonMode(), says('{"name": "Ada", "born": 1815}'))).toEqual(PASS);
    expect(check(jsonMode(), says('\n  {"name": "Ada"}\n'))).toEqual(PASS);
  });

  it.each([
    ['not JSON', 'Sure! The user is Ada, born in 1815.'],
    ['JSON that is not an object', '[{"name": "Ada"}]'],
    ['a JSON string', '"Ada"'],
    ['JSON in a code fence', '```json\n{"name": "Ada"}\n```'],
    ['JSON cut short', '{"name": "Ada", "born": 18'],
  ])('fails %s in JSON mode', (_name, content) => {
    expect(check(jsonMode(), says(content))).toEqual({ score: 0, failed: ['invalid_json'] });
  });

  it('does not judge JSON when none was asked, or when the format is text', () => {
    expect(failed(ask('x'), says('not json'))).toEqual([]);
    expect(failed(ask('x', { response_format: { type: 'text' } }), says('not json'))).toEqual([]);
  });

  const USER_SCHEMA = {
    type: 'object',
    properties: {
      name: { type: 'string' },
      born: { type: 'integer', minimum: 0 },
      email: { type: 'string', format: 'email' },
      code: { type: 'string', pattern: '^[A-Z]{2}-\\d{3}$' },
    },
    required: ['name', 'born'],
    additionalProperties: false,
  };
  const schemaMode = (schema: unknown) =>
    ask('Give me the user', {
      response_format: { type: 'json_schema', json_schema: { name: 'user', strict: true, schema } },
    });

  it('passes JSON that keeps to json_schema (unknown formats are not checked)', () => {
    const request = schemaMode(USER_SCHEMA);
    expect(check(request, says('{"name":"Ada","born":1815,"email":"not an email","code":"AB-123"}'))).toEqual(
      PASS,
    );
    // The same schema again, from the cache.
    expect(check(schemaMode(structuredClone(USER_SCHEMA)), says('{"name":"Ada","born":1815}'))).toEqual(PASS);
  });

  it.each([
    ['a missing required field', '{"name":"Ada"}'],
    ['a wrong type', '{"name":"Ada","born":"1815"}'],
    ['an extra field', '{"name":"Ada","born":1815,"age":36}'],
    ['a pattern not kept', '{"name":"Ada","born":1815,"code":"ab-1"}'],
    ['not JSON', 'Ada, 1815'],
  ])('fails json_schema with %s', (_name, content) => {
    expect(failed(schemaMode(USER_SCHEMA), says(content))).toEqual(['invalid_json']);
  });

  it('does not blame the answer for a schema ajv cannot compile, but still needs JSON', () => {
    const broken = { type: 'object', properties: { name: { type: 'strnig' } } };
    expect(failed(schemaMode(broken), says('{"name": 3}'))).toEqual([]);
    expect(failed(schemaMode(broken), says('{"name": 3}'))).toEqual([]); // cached as uncompilable
    expect(failed(schemaMode(broken), says('name: 3'))).toEqual(['invalid_json']);
    expect(failed(schemaMode({ $ref: 'https://example.com/user.json' }), says('{}'))).toEqual([]);
    expect(failed(schemaMode(undefined), says('[1, 2]'))).toEqual([]);
  });

  it('refuses schemas whose patterns could backtrack without bound', () => {
    const evil = { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } } };
    // Matched, this answer would backtrack for ages: the schema is not compiled, the answer not judged on it.
    expect(failed(schemaMode(evil), says(`{"s": "${'a'.repeat(40)}!"}`))).toEqual([]);
    expect(failed(schemaMode({ type: 'string', pattern: '^(\\w+\\s?)*$' }), says('"x"'))).toEqual([]);
    expect(failed(schemaMode({ type: 'string', pattern: '(a)\\1' }), says('"b"'))).toEqual([]);
    expect(failed(schemaMode({ type: 'string', pattern: '^[a-z]+(-[a-z]+)?$' }), says('"B"'))).toEqual([
      'invalid_json',
    ]);
  });

  it('keeps two schemas with the same $id apart', () => {
    const a = { $id: 'https://example.com/thing', type: 'object', required: ['a'] };
    const b = { $id: 'https://example.com/thing', type: 'object', required: ['b'] };
    expect(failed(schemaMode(a), says('{"a": 1}'))).toEqual([]);
    expect(failed(schemaMode(b), says('{"b": 1}'))).toEqual([]);
    expect(failed(schemaMode(b), says('{"a": 1}'))).toEqual(['invalid_json']);
  });

  it('does not judge JSON on a refusal', () => {
    expect(failed(schemaMode(USER_SCHEMA), fixture(QUALITY, 'structured-refusal.json'))).toEqual(['refusal']);
  });
});

describe('tool_call_schema', () => {
  const WEATHER = {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather in a city.',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
        required: ['city'],
        additionalProperties: false,
      },
    },
  };
  const request = ask('Weather in Paris?', {
    tools: [WEATHER, { type: 'function', function: { name: 'now' } }],
  });
  const calls = (...fns: Array<[unknown, unknown]>) =>
    answer(
      {
        content: null,
        tool_calls: fns.map(([name, args], i) => ({
          id: `call_${i}`,
          type: 'function',
          function: { name, arguments: args },
        })),
      },
      'tool_calls',
    );

  it('passes calls that keep to their declarations', () => {
    expect(check(request, calls(['get_weather', '{"city":"Paris","unit":"celsius"}']))).toEqual(PASS);
    expect(check(request, calls(['now', '{}']))).toEqual(PASS);
    expect(check(request, calls(['now', '']))).toEqual(PASS); // "" for a function without parameters
  });

  it.each([
    ['an unknown function', calls(['get_wether', '{"city":"Paris"}'])],
    ['bad JSON arguments', calls(['get_weather', '{"city":"Paris"'])],
    ['arguments that are not an object', calls(['get_weather', '["Paris"]'])],
    ['arguments that are not a string', calls(['get_weather', { city: 'Paris' }])],
    ['a missing required argument', calls(['get_weather', '{"unit":"celsius"}'])],
    ['a value outside its enum', calls(['get_weather', '{"city":"Paris","unit":"kelvin"}'])],
    ['an undeclared argument', calls(['get_weather', '{"city":"Paris","country":"FR"}'])],
    ['one bad call among good ones', calls(['now', '{}'], ['get_weather', '{}'])],
    ['a call without a name', calls([undefined, '{}'])],
  ])('fails %s', (_name, body) => {
    expect(check(request, body)).toEqual({ score: 0, failed: ['tool_call_schema'] });
  });

  it('fails a call when no tools were declared', () => {
    expect(failed(ask('x'), calls(['get_weather', '{"city":"Paris"}']))).toEqual(['tool_call_schema']);
  });

  it('checks the older function_call against functions', () => {
    const legacy = ask('x', { functions: [WEATHER.function] });
    const call = (args: string) =>
      answer({ content: null, function_call: { name: 'get_weather', arguments: args } }, 'function_call');
    expect(failed(legacy, call('{"city":"Paris"}'))).toEqual([]);
    expect(failed(legacy, call('{"town":"Paris"}'))).toEqual(['tool_call_schema']);
  });

  it('does not blame a call for parameters ajv cannot compile', () => {
    const odd = ask('x', {
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'objet' } } }],
    });
    expect(failed(odd, calls(['f', '{"a":1}']))).toEqual([]);
    expect(failed(odd, calls(['f', 'nope']))).toEqual(['tool_call_schema']);
  });
});

describe('language_mismatch', () => {
  const FR_PROMPT =
    'Bonjour, pouvez-vous m’expliquer simplement comment fonctionne un prêt immobilier à taux variable et quels sont les risques ?';
  const EN_ANSWER =
    'Sure! With a variable-rate mortgage, the interest rate follows a market index, so your monthly payment can go up or down over time. The main risk is that rates rise and the payment becomes hard to afford.';
  const FR_ANSWER =
    'Bien sûr ! Avec un prêt à taux variable, le taux d’intérêt suit un indice de marché : vos mensualités peuvent donc augmenter ou baisser avec le temps. Le principal risque est une hausse des taux.';

  it('fails a French prompt answered in English', () => {
    expect(check(ask(FR_PROMPT), says(EN_ANSWER))).toEqual({
      score: CHECK_WEIGHTS.language_mismatch,
      failed: ['language_mismatch'],
    });
  });

  it('passes a French prompt answered in French', () => {
    expect(check(ask(FR_PROMPT), says(FR_ANSWER))).toEqual(PASS);
  });

  it('reads the last user message, also as content parts', () => {
    const request = {
      messages: [
        { role: 'system', content: 'You are a helpful assistant for a bank.' },
        user('Hello, can you help me understand how mortgages work? I have a few questions.'),
        { role: 'assistant', content: 'Of course, ask away.' },
        user([
          { type: 'text', text: FR_PROMPT },
          { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
        ]),
      ],
    };
    expect(failed(request, says(EN_ANSWER))).toEqual(['language_mismatch']);
    expect(failed(request, says(FR_ANSWER))).toEqual([]);
  });

  it.each([
    ['a translation request', ask(`Traduis ce texte : ${FR_PROMPT}`)],
    ['a request in another language', ask(`${FR_PROMPT} Répondez en anglais, s’il vous plaît.`)],
    [
      'a system message naming the language',
      { messages: [{ role: 'system', content: 'Always answer in English.' }, user(FR_PROMPT)] },
    ],
    [
      'a developer message about translating',
      { messages: [{ role: 'developer', content: 'You translate.' }, user(FR_PROMPT)] },
    ],
  ])('does not judge %s', (_name, request) => {
    expect(failed(request, says(EN_ANSWER))).toEqual([]);
  });

  it('does not judge short texts', () => {
    expect(failed(ask('Bonjour, ça va ?'), says(EN_ANSWER))).toEqual([]);
    expect(failed(ask(FR_PROMPT), says('Sure, here it is: variable rates follow the market.'))).toEqual([]);
  });

  it('does not judge a code answer, nor code in the prompt', () => {
    const code = `Voici :\n\`\`\`python\ndef monthly_payment(principal, rate, years):\n    n = years * 12\n    r = rate / 12\n    return principal * r / (1 - (1 + r) ** -n)\n\nprint(monthly_payment(200_000, 0.035, 25))\n\`\`\``;
    expect(failed(ask(FR_PROMPT), says(code))).toEqual([]);
    const codePrompt = `Corrige ce code :\n\`\`\`js\n${'const total = items.reduce((sum, item) => sum + item.price * item.quantity, 0);\n'.repeat(3)}\`\`\``;
    expect(failed(ask(codePrompt), says(EN_ANSWER))).toEqual([]);
  });

  it('does not judge JSON answers', () => {
    const request = ask(FR_PROMPT, { response_format: { type: 'json_object' } });
    expect(
      failed(
        request,
        says(
          '{"explanation": "The interest rate follows a market index and your monthly payment can change over the years."}',
        ),
      ),
    ).toEqual([]);
  });

  const corpus = fixture(QUALITY, 'languages.json') as Record<string, string[]>;
  // Texts long enough to judge (one Japanese text is not).
  const chatOf = (lang: string) =>
    corpus[lang]!.map((text, i) => [lang, i, text] as const).filter(
      ([, , text]) => (text.match(/\p{L}/gu) ?? []).length >= MIN_LANGUAGE_LETTERS,
    );

  it('never calls two chat texts of one language a mismatch (sample corpus)', () => {
    for (const lang of Object.keys(corpus)) {
      for (const [, i, prompt] of chatOf(lang)) {
        for (const [, j, reply] of chatOf(lang)) {
          if (i !== j) expect([lang, i, j, failed(ask(prompt), says(reply))]).toEqual([lang, i, j, []]);
        }
      }
    }
  });

  it('calls an answer in another language a mismatch (sample corpus)', () => {
    for (const [lang, , prompt] of ['fr', 'de', 'es', 'it', 'pt', 'nl', 'pl', 'ru', 'ja'].flatMap(chatOf)) {
      expect([lang, failed(ask(prompt), says(corpus.en![0]!))]).toEqual([lang, ['language_mismatch']]);
      expect([lang, failed(ask(corpus.en![1]!), says(prompt))]).toEqual([lang, ['language_mismatch']]);
    }
  });

  it('tells English texts apart without the detector only when they plainly are (sample corpus)', () => {
    for (const [lang, texts] of Object.entries(corpus)) {
      for (const text of texts)
        expect([lang, text, plainlyEnglish(text)]).toEqual([lang, text, lang === 'en']);
    }
    expect(plainlyEnglish('The café and the bar are here')).toBe(false); // not ASCII: the detector decides
    expect(plainlyEnglish('Ik heb de auto in de garage gezet, dat is het')).toBe(false);
  });

  it('does not judge without a user message', () => {
    expect(failed({ messages: [{ role: 'system', content: FR_PROMPT }] }, says(EN_ANSWER))).toEqual([]);
  });
});
