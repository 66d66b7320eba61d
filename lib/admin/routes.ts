export interface AdminRequest {
  method: string;
  /** Path without the query, e.g. `/budgets/team-daily`. */
  path: string;
  query: URLSearchParams;
}

/** Status and JSON body, or a text body with its content type (Prometheus' format). */
export type AdminAnswer = [status: number, body: unknown, contentType?: string];

export type AdminHandler = (req: AdminRequest) => Promise<AdminAnswer>;

/**
 * The admin endpoint's resources, by first path segment (`/targets`, `/budgets`...). The
 * suite server adds its own; plugins add theirs when an instance is created.
 */
export class AdminRoutes {
  private readonly handlers = new Map<string, AdminHandler>();

  /** Serves `/<name>` and everything under it. The last registration of a name wins. */
  add(name: string, handler: AdminHandler): void {
    this.handlers.set(name, handler);
  }

  find(path: string): AdminHandler | undefined {
    const name = path.split('/')[1] ?? '';
    return this.handlers.get(name);
  }
}

export function adminError(status: number, message: string, code: string): AdminAnswer {
  const type = status >= 500 ? 'server_error' : status === 404 ? 'not_found_error' : 'invalid_request_error';
  return [status, { error: { message, type, code, param: null } }];
}
