import type { ContextStore, RouteDecision, Ticket } from '../../lib/context';

/** A ticket as ai-router's access handler would issue it: its policy sets this route. */
export function issueRouteTicket(contexts: ContextStore, route: RouteDecision | undefined): Ticket {
  return contexts.issue({
    plugin: 'ai-router',
    priority: 750,
    apply(ctx) {
      ctx.route = route;
      return undefined;
    },
  });
}
