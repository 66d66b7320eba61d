export * from './context-store';
export * from './request-context';

/** Request header that carries the context id from the first suite plugin to the others and to the relay. */
export const CONTEXT_HEADER = 'x-aigw-context';
