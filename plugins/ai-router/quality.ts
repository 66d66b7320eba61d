/**
 * Automatic quality checks of one answer, cheap enough for every request: empty, refusal, cut
 * by length, invalid JSON where JSON was asked, tool calls not matching their declaration,
 * answer language unlike the prompt's, broken stream. Pure: the caller passes the request,
 * the recorded answer and the relay's outcome, and gets a verdict to count.
 */
import Ajv, { type ValidateFunction } from 'ajv';
import { LRUCache } from 'lru-cache';
import { detect } from 'tinyld';
import type { Endpoint, RelayOutcome } from '../../lib/context';

export type CheckName =
  | 'empty'
  | 'refusal'
  | 'truncated'
  | 'invalid_json'
  | 'tool_call_schema'
  | 'language_mismatch'
  | 'broken_stream';

export interface QualityVerdict {
  /** 1 when every check passed; otherwise the lowest weight among the failed checks. */
  score: number;
  failed: CheckName[];
}

/**
 * The score an answer keeps when a check fails; the verdict takes the lowest. An answer the
 * client cannot use at all (nothing, unparsable JSON, a call it cannot make, a stream cut
 * short) scores 0. A refusal may be right (the request was out of bounds), so it keeps a
 * little; a language mismatch is still an answer; a cut answer usually holds its first part.
 */
export const CHECK_WEIGHTS: Readonly<Record<CheckName, number>> = {
  empty: 0,
  refusal: 0.2,
  truncated: 0.5,
  invalid_json: 0,
  tool_call_schema: 0,
  language_mismatch: 0.3,
  broken_stream: 0,
};

export interface AnswerToCheck {
  endpoint: Endpoint;
  /** The client's OpenAI-format body. */
  request: Record<string, unknown> | undefined;
  /** The answer in OpenAI's non-stream JSON shape (`RelayOutcome['answer'].body`); undefined when not kept. */
  answer: Record<string, unknown> | undefined;
  outcome: RelayOutcome;
}

/**
 * Checks one answer. Undefined when there is nothing to judge: not a chat completion, or an
 * exchange that did not end with a 2xx answer (errors, timeouts, aborts are counted elsewhere),
 * except a stream that broke after it started. A complete answer that was not kept (too large,
 * not asked) is judged on its end only, and passes.
 */
export function checkAnswer(input: AnswerToCheck): QualityVerdict | undefined {
  const { endpoint, request, answer, outcome } = input;
  if (endpoint !== 'chat.completions') return undefined;
  if (outcome.end === 'stream_broken') return verdictOf(['broken_stream']);
  if (outcome.end !== 'complete' || outcome.status < 200 || outcome.status >= 300) return undefined;
  const choice = firstChoice(answer);
  if (!choice) return verdictOf(answer === undefined ? [] : ['empty']);
  return verdictOf(checkChoice(request ?? {}, choice));
}

function verdictOf(failed: CheckName[]): QualityVerdict {
  let score = 1;
  for (const check of failed) score = Math.min(score, CHECK_WEIGHTS[check]);
  return { score, failed };
}

type Json = Record<string, unknown>;

interface Choice {
  message: Json;
  finishReason: unknown;
}

function firstChoice(answer: Json | undefined): Choice | undefined {
  const choices = answer?.choices;
  if (!Array.isArray(choices) || !isObject(choices[0])) return undefined;
  const message = isObject(choices[0].message) ? choices[0].message : {};
  return { message, finishReason: choices[0].finish_reason };
}

function checkChoice(request: Json, { message, finishReason }: Choice): CheckName[] {
  const failed: CheckName[] = [];
  const content = typeof message.content === 'string' ? message.content : '';
  const calls = toolCallsOf(message);
  const refusal = typeof message.refusal === 'string' && message.refusal.trim() !== '';
  const hasText = content.trim() !== '';
  if (!hasText && calls.length === 0 && !refusal) failed.push('empty');
  if (refusal || finishReason === 'content_filter' || (hasText && isRefusalText(content))) {
    failed.push('refusal');
  }
  if (finishReason === 'length') failed.push('truncated');
  if (hasText && !refusal && !jsonAsAsked(request.response_format, content)) failed.push('invalid_json');
  if (calls.length > 0 && !callsMatch(request, calls)) failed.push('tool_call_schema');
  if (hasText && !refusal && languageMismatch(request, content)) failed.push('language_mismatch');
  return failed;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// Refusals

/**
 * Clear refusals only: the answer opens with one of these (lowercased, curly apostrophes made
 * straight), and is short. Each language has three forms: an apology followed by "but I
 * can't <help>", a bare "I can't <help>", and "as an AI, I can't <help>"; the verb must be one of
 * helping or complying, so "I'm sorry, but I can't find a bug in this code" is an answer.
 */
const REFUSAL_OPENINGS: readonly RegExp[] = [
  // English
  /^(?:(?:i'm|i am) sorry|sorry|i apologi[sz]e|unfortunately)[,.!]? (?:but )?i (?:can't|cannot|can not|won't|will not|am unable to|'m unable to|am not able to|'m not able to) (?:help|assist|provide|comply|fulfil|do that|do this|create|generate|write|share|engage|support|answer|continue|give)/,
  /^i (?:can't|cannot|can not|won't|will not|am unable to|'m unable to|am not able to|'m not able to) (?:help|assist|comply|fulfil|provide that|provide this|do that|do this|engage|answer that|answer this)/,
  /^as an ai(?: language model| assistant| model)?,? i (?:can't|cannot|can not|won't|am unable to|am not able to|'m not able to|'m unable to) (?:help|assist|provide|comply|fulfil|create|generate|write|share|engage|support|answer|give)/,
  // French
  /^(?:(?:je suis )?désolée?|je m'excuse|malheureusement)[,.!]? (?:mais )?je ne (?:peux|pourrai|suis) pas (?:en mesure d(?:e |'))?(?:vous |t'|te )?(?:aider|assister|fournir|répondre|satisfaire|accéder à (?:cette|votre) demande|faire ça|faire cela|créer|générer|écrire|donner)/,
  /^je ne (?:peux|pourrai|suis) pas (?:en mesure d(?:e |'))?(?:vous |t'|te )?(?:aider|assister|répondre à cette|satisfaire|accéder à (?:cette|votre) demande|faire ça|faire cela)/,
  /^en tant qu'(?:ia|intelligence artificielle|assistant|modèle de langage),? je ne (?:peux|suis) pas/,
  // German
  /^(?:(?:es tut mir leid|entschuldigung|sorry)[,.!]? (?:aber )?)?(?:leider )?(?:ich kann|kann ich)\b[^.!?\n]{0,40}? nicht (?:helfen|behilflich|unterstützen|erfüllen|nachkommen|beantworten|bereitstellen)/,
  /^als (?:ki|künstliche intelligenz|ki-assistent|sprachmodell),? (?:kann|darf) ich\b[^.!?\n]{0,40}? nicht/,
  // Spanish
  /^(?:(?:lo siento|perdón|disculpa|lamentablemente)[,.!]? (?:pero )?)?no (?:puedo|podré|estoy en condiciones de) (?:ayudar|asistir|proporcionar|cumplir|hacer eso|crear|generar|escribir|responder|dar)/,
  /^como (?:una )?(?:ia|inteligencia artificial|modelo de lenguaje|asistente),? no (?:puedo|debo)/,
  // Italian
  /^(?:(?:mi dispiace|purtroppo|scusa|scusami)[,.!]? (?:ma )?)?non (?:posso|sono in grado di) (?:aiutar|assistere|fornire|soddisfare|fare questo|creare|generare|scrivere|rispondere|dare)/,
  /^come (?:un'?\s?)?(?:ia|intelligenza artificiale|modello linguistico|assistente),? non (?:posso|sono in grado)/,
  // Portuguese
  /^(?:(?:desculpe|sinto muito|lamento|infelizmente)[,.!]? (?:mas )?)?(?:eu )?não (?:posso|consigo|sou capaz de) (?:ajudar|auxiliar|fornecer|atender|cumprir|fazer isso|criar|gerar|escrever|responder|dar)/,
  /^como (?:uma )?(?:ia|inteligência artificial|modelo de linguagem|assistente),? (?:eu )?não (?:posso|consigo)/,
];

/** Longer answers that open with an apology usually go on to help: they are not judged refusals. */
const REFUSAL_MAX_CHARS = 600;

function isRefusalText(content: string): boolean {
  const text = content.trim();
  if (text.length > REFUSAL_MAX_CHARS) return false;
  const opening = text
    .slice(0, 200)
    .toLowerCase()
    .replace(/[’‘]/g, "'")
    .replace(/^[\s*_>#"]+/, '')
    .replace(/\s+/g, ' ');
  return REFUSAL_OPENINGS.some((pattern) => pattern.test(opening));
}

// ---------------------------------------------------------------------------------------------
// JSON answers and tool calls, validated with ajv

/**
 * Patterns come from the client's schema and run on the model's text: a pattern with a
 * quantified group that holds a quantifier, or a back-reference, may backtrack for ever, so its
 * schema is refused (and the answer not judged against it).
 */
const RISKY_PATTERN = /\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]|\\[1-9]|\\k</;

function screenedRegExp(pattern: string, flags: string): RegExp {
  if (RISKY_PATTERN.test(pattern)) throw new Error('pattern may backtrack without bound');
  return new RegExp(pattern, flags);
}
// Generated validators build the (screened) patterns with plain `new RegExp`.
screenedRegExp.code = 'new RegExp';

const ajv = new Ajv({
  strict: false,
  validateFormats: false, // formats need a plugin, and no format is worth a false failure
  logger: false,
  code: { regExp: screenedRegExp },
});

const UNCOMPILABLE = 'uncompilable';
type CompiledSchema = ValidateFunction | typeof UNCOMPILABLE;

/** Validators by schema text: a schema is compiled once, and a bounded number are kept. */
const validators = new LRUCache<string, CompiledSchema>({
  max: 512,
  maxSize: 8 * 1024 * 1024,
  sizeCalculation: (_value, key) => key.length + 1,
});

/** The validator of a schema; undefined when ajv cannot compile it (not the answer's fault). */
function validatorFor(schema: unknown): ValidateFunction | undefined {
  if (!isObject(schema) && typeof schema !== 'boolean') return undefined;
  const key = JSON.stringify(schema);
  let compiled = validators.get(key);
  if (compiled === undefined) {
    compiled = compile(schema);
    validators.set(key, compiled);
  }
  return compiled === UNCOMPILABLE ? undefined : compiled;
}

function compile(schema: Json | boolean): CompiledSchema {
  try {
    return ajv.compile(schema);
  } catch {
    return UNCOMPILABLE;
  } finally {
    // ajv keeps every schema it compiled (and refuses a second one with the same $id): this
    // cache is the only one.
    if (typeof schema === 'object') ajv.removeSchema(schema);
  }
}

function parseJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) };
  } catch {
    return undefined;
  }
}

/** Does the content keep to `response_format`? True when no JSON was asked. */
function jsonAsAsked(format: unknown, content: string): boolean {
  if (!isObject(format)) return true;
  if (format.type === 'json_object') return isObject(parseJson(content)?.value);
  if (format.type !== 'json_schema') return true;
  const parsed = parseJson(content);
  if (!parsed) return false;
  const spec = isObject(format.json_schema) ? format.json_schema : {};
  const validate = validatorFor(spec.schema);
  return validate === undefined || validate(parsed.value) === true;
}

interface ToolCall {
  name: unknown;
  arguments: unknown;
}

/** Function calls of the message (`tool_calls`, or the older `function_call`); other tool types are not judged. */
function toolCallsOf(message: Json): ToolCall[] {
  const calls: ToolCall[] = [];
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls) {
      if (!isObject(call) || (call.type !== undefined && call.type !== 'function')) continue;
      const fn = isObject(call.function) ? call.function : {};
      calls.push({ name: fn.name, arguments: fn.arguments });
    }
  }
  if (isObject(message.function_call)) {
    calls.push({ name: message.function_call.name, arguments: message.function_call.arguments });
  }
  return calls;
}

/** The declared functions by name, with their parameter schemas (`tools`, or the older `functions`). */
function declaredFunctions(request: Json): Map<string, unknown> {
  const declared = new Map<string, unknown>();
  const declare = (fn: unknown) => {
    if (isObject(fn) && typeof fn.name === 'string') declared.set(fn.name, fn.parameters);
  };
  if (Array.isArray(request.tools)) {
    for (const tool of request.tools) if (isObject(tool) && tool.type === 'function') declare(tool.function);
  }
  if (Array.isArray(request.functions)) for (const fn of request.functions) declare(fn);
  return declared;
}

/**
 * Every call names a declared function, and its arguments parse as a JSON object that keeps to
 * the function's parameters. Empty arguments count as `{}` (several providers send "" for a
 * function without parameters).
 */
function callsMatch(request: Json, calls: ToolCall[]): boolean {
  const declared = declaredFunctions(request);
  for (const call of calls) {
    if (typeof call.name !== 'string' || !declared.has(call.name)) return false;
    if (typeof call.arguments !== 'string') return false;
    const text = call.arguments.trim() === '' ? '{}' : call.arguments;
    const args = parseJson(text)?.value;
    if (!isObject(args)) return false;
    const validate = validatorFor(declared.get(call.name));
    if (validate && validate(args) !== true) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Answer language

/**
 * Letters each text needs before its language is judged (a CJK character counts as one, so short
 * Chinese or Japanese texts are left out too). On short chat texts (the samples in
 * spec/fixtures/quality/languages.json, `bench-quality --reliability`), tinyld names the right
 * language for 98 % of 40-letter texts and 99.8 % of 60-letter ones: below 60 a same-language
 * pair is called a mismatch too often.
 */
export const MIN_LANGUAGE_LETTERS = 60;
/** Letters of each text given to tinyld: its cost grows with the text, its accuracy is there by 100. */
const LANGUAGE_SAMPLE_LETTERS = 80;

/**
 * Requests about languages are not judged: a system, developer or last user message that
 * speaks of translating or names a language, in English, French, German, Spanish, Italian or
 * Portuguese ("answer in French", "traduis en anglais", "auf Deutsch", "en español"). Broad on
 * purpose: "the French revolution" is not judged either, and a missed judgment costs less than a
 * false one.
 */
const LANGUAGE_WORDS = [
  // translating
  'translat',
  'tradu',
  'übersetz',
  'vertaal',
  // "language"
  'language',
  'langue',
  'sprache',
  'idioma',
  'lingua',
  // English
  'english',
  'french',
  'german',
  'spanish',
  'italian',
  'portuguese',
  'dutch',
  'chinese',
  'japanese',
  'korean',
  'russian',
  'arabic',
  'hindi',
  'polish',
  'turkish',
  // French
  'anglais',
  'français',
  'francais',
  'allemand',
  'espagnol',
  'italien',
  'portugais',
  'néerlandais',
  'chinois',
  'japonais',
  'russe',
  'arabe',
  // German
  'englisch',
  'französisch',
  'deutsch',
  'spanisch',
  'italienisch',
  'portugiesisch',
  'niederländisch',
  'chinesisch',
  'japanisch',
  'russisch',
  // Spanish
  'inglés',
  'ingles',
  'francés',
  'alemán',
  'español',
  'castellano',
  'italiano',
  'portugués',
  'chino',
  'japonés',
  'ruso',
  // Italian
  'inglese',
  'francese',
  'tedesco',
  'spagnolo',
  'portoghese',
  'cinese',
  'giapponese',
  // Portuguese
  'inglês',
  'francês',
  'alemão',
  'espanhol',
  'português',
  'chinês',
  'japonês',
  'russo',
];
/** One of the words at the start of a word (lowercased text). */
const LANGUAGE_REQUEST = new RegExp(`(?:^|[^\\p{L}])(?:${LANGUAGE_WORDS.join('|')})`, 'u');

function speaksOfLanguages(text: string): boolean {
  return LANGUAGE_REQUEST.test(text.toLowerCase());
}

/**
 * Answers mostly in code fences are not judged; nor is code anywhere in either text (fenced,
 * inline or indented), nor links.
 */
function proseOf(text: string): string | undefined {
  const fenced = text.match(/```[\s\S]*?(?:```|$)|~~~[\s\S]*?(?:~~~|$)/g);
  const codeChars = fenced ? fenced.reduce((sum, block) => sum + block.length, 0) : 0;
  if (codeChars * 2 > text.length) return undefined;
  return text
    .replace(/```[\s\S]*?(?:```|$)|~~~[\s\S]*?(?:~~~|$)/g, ' ')
    .replace(/`[^`\n]*`/g, ' ')
    .replace(/^(?: {4}|\t).*$/gm, ' ')
    .replace(/\bhttps?:\/\/\S+/g, ' ');
}

/** The start of the text, cut after `letters` letters; undefined when it has fewer than the minimum. */
function sampleOf(text: string, letters: number): string | undefined {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    // Letters: ASCII, Latin-1 and beyond (accents, other scripts); digits and symbols are not.
    if ((code | 32) >= 97 && (code | 32) <= 122) count++;
    else if (code >= 0xc0 && code !== 0xd7 && code !== 0xf7 && /\p{L}/u.test(text[i]!)) count++;
    if (count >= letters) return text.slice(0, i + 1);
  }
  return count >= MIN_LANGUAGE_LETTERS ? text : undefined;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const part of content) {
    if (isObject(part) && part.type === 'text' && typeof part.text === 'string') text += `${part.text}\n`;
  }
  return text;
}

/** The last user message's text, or undefined when the request speaks of languages. */
function promptText(request: Json): string | undefined {
  const messages = Array.isArray(request.messages) ? request.messages.filter(isObject) : [];
  let last: string | undefined;
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]!.role === 'user') {
      last = textOf(messages[i]!.content);
      break;
    }
  }
  if (last === undefined || speaksOfLanguages(last)) return undefined;
  for (const m of messages) {
    if ((m.role === 'system' || m.role === 'developer') && speaksOfLanguages(textOf(m.content))) {
      return undefined;
    }
  }
  return last;
}

/** Common English words that other Latin-script languages do not use as words. */
const ENGLISH_WORDS =
  /\b(?:the|and|that|with|you|your|this|what|which|have|are|how|should|would|could|our|will|there|their|from|about|need|for|here|please|can't|don't|it's)\b/gi;

/** ASCII text with at least three different common English words: English, no detection needed. */
export function plainlyEnglish(sample: string): boolean {
  for (let i = 0; i < sample.length; i++) if (sample.charCodeAt(i) > 0x7e) return false;
  const found = new Set<string>();
  for (const m of sample.matchAll(ENGLISH_WORDS)) {
    found.add(m[0].toLowerCase());
    if (found.size >= 3) return true;
  }
  return false;
}

function languageMismatch(request: Json, content: string): boolean {
  // JSON answers are data, their keys often English whatever the prompt's language.
  if (isObject(request.response_format) && request.response_format.type !== 'text') return false;
  const prompt = promptText(request);
  if (prompt === undefined) return false;
  const answerProse = proseOf(content);
  const promptProse = proseOf(prompt);
  if (answerProse === undefined || promptProse === undefined) return false;
  const answerSample = sampleOf(answerProse, LANGUAGE_SAMPLE_LETTERS);
  const promptSample = sampleOf(promptProse, LANGUAGE_SAMPLE_LETTERS);
  if (answerSample === undefined || promptSample === undefined) return false;
  // Most traffic is English both ways: tell that without tinyld, which costs ~0.1 ms a text.
  if (plainlyEnglish(promptSample) && plainlyEnglish(answerSample)) return false;
  const asked = detect(promptSample);
  const answered = detect(answerSample);
  // tinyld answers '' when it cannot tell: not a mismatch.
  return asked !== '' && answered !== '' && asked !== answered;
}
