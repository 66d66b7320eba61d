import type { Endpoint, ProviderKind, Target } from '../../../context/request-context';
import type { OpenAIDialect } from '../openai/api';

/** What the gateway knows about one OpenAI-compatible server: where it departs from OpenAI. */
export interface CompatProfile {
  provider: ProviderKind;
  /** The endpoints it serves (others answer 400 before any call). */
  endpoints: readonly Endpoint[];
  dialect: OpenAIDialect;
  /**
   * The body to send: throws AIGW_UNSUPPORTED_FEATURE for what the server cannot do, renames
   * what it names differently. Never changes `body` itself.
   */
  prepare(endpoint: Endpoint, body: Record<string, unknown>, target: Target): Record<string, unknown>;
  /** The error message when the server's own shape hides it (Mistral's validation details). */
  errorMessage?(json: unknown): string | undefined;
}
