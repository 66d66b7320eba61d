export * from './target-health';
