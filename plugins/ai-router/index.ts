import type { PromptMasking, RequestContext, RouteDecision } from '../../lib/context';
import { LocalEmbedder } from '../../lib/embed';
import { GatewayError } from '../../lib/errors';
import { gatherFacts } from '../../lib/kong/facts';
import { definePlugin } from '../../lib/kong/plugin';
import { headerSafe } from '../../lib/relay/headers';
import { type RouterConfig, routerConfig } from '../../schemas/ai-router';
import { Experiments } from './experiments';
import { allowedRegions, checkAccess, groupsOf, type Requester } from './policy';
import { PromptRedactor } from './redaction';
import { Router } from './router';
import { resolveTargets } from './targets';
import { CLASSIFIER_DIMENSIONS, TaskClassifier, taskInputOf } from './tasks';

/** What an ai-router instance decides with, built once from its config. */
interface Routing {
  config: RouterConfig;
  router: Router;
  experiments?: Experiments;
  classifier?: Promise<TaskClassifier>;
  redactor?: PromptMasking;
}

/**
 * Chooses the target of every request. Priority 750: after Kong's auth (key-auth 1250),
 * ACL (950), rate limiting (910) and AI prompt plugins (ai-prompt-* 771–777, so it routes
 * the final prompt), after ai-semantic-cache (a hit needs no route), before ai-budget (which
 * prices the chosen target).
 */
export default definePlugin({
  config: routerConfig,
  priority: 750,
  phases: ['access'],
  create(config, _keys, suite) {
    const routing: Routing = {
      config,
      router: new Router(config, resolveTargets(config, process.env), {
        health: suite.health,
        load: suite.load,
      }),
    };
    if (config.experiments.length > 0) {
      routing.experiments = new Experiments(
        config.experiments,
        suite.store,
        suite.logger.child({ plugin: 'ai-router' }),
      );
    }
    if (config.redaction?.enabled) routing.redactor = new PromptRedactor(config.redaction);
    if (config.tasks) {
      routing.classifier = TaskClassifier.create(
        config.tasks,
        new LocalEmbedder({ dimensions: CLASSIFIER_DIMENSIONS }),
      );
      routing.classifier.catch(() => undefined); // reported by the requests that need it
    }
    const needs = {
      consumer:
        config.access.length > 0 ||
        (config.residency?.consumers.length ?? 0) > 0 ||
        (config.tasks?.premium?.consumer_tags.length ?? 0) > 0 ||
        config.experiments.some((e) => e.sticky_by === 'consumer'),
      credential: config.experiments.some((e) => e.sticky_by === 'credential'),
    };

    return {
      ...(needs.consumer || needs.credential ? { gather: (pdk) => gatherFacts(pdk, needs) } : {}),
      async request(ctx) {
        const who: Requester = {
          consumer: ctx.facts.consumer,
          groups: groupsOf(ctx.header('x-consumer-groups')),
        };
        if (ctx.endpoint === 'models') return { status: 200, body: modelList(routing, who) };
        ctx.route = { ...(await decide(ctx, routing, who)), exposeTarget: config.headers.enabled };
        if (config.headers.enabled) setHeaders(ctx, ctx.route);
        return undefined;
      },
      close: () => routing.experiments?.close(),
    };
  },
});

/**
 * The client's model → mapping → access → experiment arm → task → pool or target → filters,
 * health and strategy. Each step that changes the destination says so in the reason.
 */
async function decide(
  ctx: RequestContext,
  routing: Routing,
  who: Requester,
): Promise<Omit<RouteDecision, 'exposeTarget'>> {
  const { config, router, experiments } = routing;
  const requested = ctx.model;
  const mapped =
    requested !== undefined && Object.hasOwn(config.model_map, requested)
      ? config.model_map[requested]
      : undefined;
  const reasons: string[] = mapped !== undefined ? [`mapped to ${mapped}`] : [];
  let name = mapped ?? requested;
  if (name === undefined || !(router.knows(name) || name === config.tasks?.model)) {
    if (config.default_target === undefined) {
      if (requested === undefined)
        throw new GatewayError('AIGW_BAD_REQUEST', "'model' is required", { param: 'model' });
      throw new GatewayError(
        'AIGW_UNKNOWN_MODEL',
        'the requested model is not served here; GET /v1/models lists the models you can use',
        { param: 'model' },
      );
    }
    name = config.default_target;
    reasons.push('default target');
  }
  checkAccess(config.access, who, requested !== undefined ? [requested, name] : [name]);

  const arm = experiments?.assign(name, {
    consumerId: ctx.facts.consumer?.id,
    credentialId: ctx.facts.credentialId,
    header: (h) => ctx.header(h),
  });
  if (arm && experiments) {
    name = arm.routeTo;
    reasons.push(`experiment ${arm.experiment}: ${arm.arm}${arm.halted ? ' (halted)' : ''}`);
    // The arm's result feeds the experiment's guard once the answer is complete.
    const started = Date.now();
    ctx.afterExchange(() => {
      if (ctx.outcome)
        experiments.record(arm, { error: ctx.outcome.status >= 500, latencyMs: Date.now() - started });
    });
  }

  let task: string | undefined;
  if (name === config.tasks?.model && routing.classifier) {
    ({ name, task } = await routeTask(ctx, config.tasks, await classifierOf(routing.classifier), who));
    reasons.push(task === undefined ? `premium: ${name}` : `task ${task}: ${name}`);
  }

  const regions = allowedRegions(config.residency, who, (h) => ctx.header(h));
  const decision = router.route(name, {
    endpoint: ctx.endpoint ?? 'chat.completions',
    body: ctx.body,
    regions,
  });
  return {
    ...decision,
    reason: [...reasons, decision.reason].join('; '),
    ...(routing.redactor ? { redactor: routing.redactor } : {}),
    ...(task !== undefined ? { task } : {}),
    ...(arm ? { experiment: { name: arm.experiment, arm: arm.arm } } : {}),
  };
}

/** Where a request for the task model goes: the premium pool for high-stakes requests, else its task's. */
async function routeTask(
  ctx: RequestContext,
  tasks: NonNullable<RouterConfig['tasks']>,
  classifier: TaskClassifier,
  who: Requester,
): Promise<{ name: string; task?: string }> {
  const premium = tasks.premium;
  if (
    premium &&
    ((premium.header !== undefined && ctx.header(premium.header) === 'premium') ||
      who.consumer?.tags?.some((t) => premium.consumer_tags.includes(t)))
  ) {
    return { name: premium.pool };
  }
  const input = taskInputOf(ctx.endpoint, ctx.body);
  const { task } = await classifier.classify(input);
  const name = Object.hasOwn(tasks.routes, task) ? tasks.routes[task]! : tasks.routes[tasks.default_task]!;
  return { name, task };
}

async function classifierOf(pending: Promise<TaskClassifier>): Promise<TaskClassifier> {
  try {
    return await pending;
  } catch (err) {
    throw new GatewayError('AIGW_CONFIG_INVALID', 'the task classifier of ai-router could not be built', {
      cause: err,
    });
  }
}

function setHeaders(ctx: RequestContext, route: RouteDecision): void {
  const reason = headerSafe(route.reason);
  if (reason !== undefined) ctx.responseHeaders['x-ai-route-reason'] = reason;
  if (route.task !== undefined) ctx.responseHeaders['x-ai-task'] = route.task;
  if (route.experiment)
    ctx.responseHeaders['x-ai-experiment'] = `${route.experiment.name}=${route.experiment.arm}`;
}

/** `GET /v1/models`: what this client may put in `model`. */
function modelList({ config, router }: Routing, who: Requester) {
  const names = [
    ...router.names(),
    ...Object.keys(config.model_map),
    ...(config.tasks ? [config.tasks.model] : []),
  ];
  const allowed = names.filter((name) => {
    try {
      checkAccess(config.access, who, [name, config.model_map[name] ?? name]);
      return true;
    } catch {
      return false;
    }
  });
  const owner = new Map(config.targets.map((t) => [t.name, t.provider]));
  return {
    object: 'list',
    data: [...new Set(allowed)].map((id) => ({
      id,
      object: 'model',
      created: 0,
      owned_by: owner.get(id) ?? 'ai-gateway',
    })),
  };
}
