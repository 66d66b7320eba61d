/**
 * Loopback mocks of LLM providers for tests and the dev gateway.
 *
 *   const openai = await startOpenAIMock({ apiKey: 'sk-test' }); // http://127.0.0.1:PORT/v1
 *   openai.nextFault({ kind: 'status', status: 429, headers: { 'retry-after': '1' } });
 *   ... point the relay at openai.url, assert on openai.requests ...
 *   await openai.close();
 *
 * Answers are deterministic (`defaultAnswer`, or `setAnswer`), one token = one word
 * (`countTokens`), streams send one word per chunk. Real-format reference transcripts live in
 * spec/fixtures/providers/<provider>/ and a test keeps the mocks' shapes equal to them.
 */
export { type AnthropicMock, startAnthropicMock } from './anthropic';
export { AZURE_API_VERSIONS, type AzureMockOptions, startAzureMock } from './azure';
export { type AwsTestCredentials, type BedrockMock, startBedrockMock } from './bedrock';
export { startGeminiMock } from './gemini';
export { embeddingVector, OPENAI_MODELS, startOpenAIMock } from './openai';
export { parseSse, type RawResponse, rawRequest, type SseFrame, sseJson } from './raw-http';
export {
  countTokens,
  defaultAnswer,
  type Fault,
  type MockOptions,
  type ProviderMock,
  type RecordedRequest,
  splitTokens,
} from './shared';
