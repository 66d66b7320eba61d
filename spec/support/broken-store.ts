import type { Store } from '../../lib/store';

/** A store that is down: every call fails, half of them by throwing at once, the others by rejecting. */
export function brokenStore(): Store {
  let n = 0;
  return new Proxy({} as Store, {
    get(_target, prop) {
      if (prop === 'kind') return 'redis';
      return () => {
        if (n++ % 2 === 0) throw new Error('store down');
        return Promise.reject(new Error('store down'));
      };
    },
  });
}
