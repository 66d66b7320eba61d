export * from './context-store';
export * from './request-context';

/** Upstream request header that carries the context id from the plugins to the relay. */
export const CONTEXT_HEADER = 'x-aigw-context';

/** Key under which the context id is kept in `kong.ctx.shared`, readable by other plugins. */
export const CONTEXT_SHARED_KEY = 'ai_gateway_context';
