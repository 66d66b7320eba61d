import type { ListenOptions, Server } from 'node:net';

/** Starts a server; a bind failure (port taken, bad path) rejects instead of becoming an unheard 'error' event. */
export function listen(server: Server, options: ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
