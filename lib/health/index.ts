export * from './target-health';
export * from './target-load';
