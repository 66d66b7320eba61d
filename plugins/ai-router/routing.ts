import type { Registry } from 'prom-client';
import type { PromptMasking, RequestContext, RouteDecision } from '../../lib/context';
import { embedderFromConfig } from '../../lib/embed';
import { GatewayError } from '../../lib/errors';
import type { TargetHealth, TargetLoad } from '../../lib/health';
import type { Logger } from '../../lib/log/logger';
import type { Store } from '../../lib/store';
import { CLASSIFIER_DIMENSIONS, type RouterConfig } from '../../schemas/ai-router';
import { AdaptiveRouting } from './bandit';
import { Experiments } from './experiments';
import { allowedRegions, checkAccess, type Requester } from './policy';
import { PromptRedactor } from './redaction';
import { Router } from './router';
import { QualitySignals } from './signals';
import { resolveTargets } from './targets';
import { TaskClassifier, taskInputOf } from './tasks';

/** What an ai-router instance decides with, built once from its config. */
export interface Routing {
  config: RouterConfig;
  router: Router;
  experiments?: Experiments;
  classifier?: Classifier;
  redactor?: PromptMasking;
  adaptive?: AdaptiveRouting;
  /** Where each request's quality signals (and experiment results) go once it is answered. */
  signals: QualitySignals;
}

export function createRouting(
  config: RouterConfig,
  deps: {
    health?: TargetHealth;
    load?: TargetLoad;
    store: Store;
    logger: Logger;
    metrics?: Registry;
    env?: NodeJS.ProcessEnv;
  },
): Routing {
  const adaptive = config.pools.some((p) => p.strategy === 'adaptive')
    ? new AdaptiveRouting(deps.store, deps.logger)
    : undefined;
  const experiments =
    config.experiments.length > 0 ? new Experiments(config.experiments, deps.store, deps.logger) : undefined;
  const router = new Router(config, resolveTargets(config, deps.env ?? process.env), {
    health: deps.health,
    load: deps.load,
    adaptive,
  });
  return {
    config,
    router,
    ...(experiments ? { experiments } : {}),
    ...(adaptive ? { adaptive } : {}),
    ...(config.redaction?.enabled ? { redactor: new PromptRedactor(config.redaction) } : {}),
    ...(config.tasks ? { classifier: new Classifier(config.tasks) } : {}),
    signals: new QualitySignals(config, router.catalog, { ...deps, adaptive, experiments }),
  };
}

/** Frees what the instance holds: background timers and the judge's connections. */
export function closeRouting(routing: Routing): void {
  routing.experiments?.close();
  routing.adaptive?.close();
  routing.signals.close();
}

/** How long a classifier without its examples (the embedder failed) waits before trying again. */
const CLASSIFIER_RETRY_MS = 30_000;

/**
 * The task classifier, built once in the background. When the embedder fails at build time,
 * the rules still work and the examples are embedded again on a later request.
 */
export class Classifier {
  private built: Promise<TaskClassifier>;
  private builtAt = Date.now();

  constructor(private readonly tasks: NonNullable<RouterConfig['tasks']>) {
    this.built = this.build();
  }

  async get(): Promise<TaskClassifier> {
    let classifier: TaskClassifier;
    try {
      classifier = await this.built;
    } catch (err) {
      throw new GatewayError('AIGW_CONFIG_INVALID', 'the task classifier of ai-router could not be built', {
        cause: err,
      });
    }
    if (!classifier.complete && Date.now() - this.builtAt > CLASSIFIER_RETRY_MS) {
      const next = this.build();
      this.builtAt = Date.now();
      next.then(
        (c) => {
          if (c.complete) this.built = next;
        },
        () => undefined,
      );
    }
    return classifier;
  }

  private build(): Promise<TaskClassifier> {
    const built = TaskClassifier.create(
      this.tasks,
      embedderFromConfig(this.tasks.embedder, CLASSIFIER_DIMENSIONS),
    );
    built.catch(() => undefined); // reported by the requests that need it
    return built;
  }
}

/**
 * The client's model → mapping → access → experiment arm → task → pool or target → filters,
 * health and strategy. Each step that changes the destination says so in the reason.
 */
export async function decide(
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
  if (arm) {
    name = arm.routeTo;
    reasons.push(`experiment ${arm.experiment}: ${arm.arm}${arm.halted ? ' (halted)' : ''}`);
  }

  let task: string | undefined;
  if (name === config.tasks?.model && routing.classifier) {
    ({ name, task } = await routeTask(ctx, config.tasks, await routing.classifier.get(), who));
    reasons.push(task === undefined ? `premium: ${name}` : `task ${task}: ${name}`);
  }

  const regions = allowedRegions(config.residency, who, (h) => ctx.header(h));
  const decision = router.route(name, {
    endpoint: ctx.endpoint ?? 'chat.completions',
    body: ctx.body,
    regions,
    ...(task !== undefined ? { task } : {}),
  });
  const route = {
    ...decision,
    reason: [...reasons, decision.reason].join('; '),
    ...(routing.redactor ? { redactor: routing.redactor } : {}),
    ...(task !== undefined ? { task } : {}),
    ...(arm ? { experiment: { name: arm.experiment, arm: arm.arm } } : {}),
  };
  routing.signals.watch(ctx, route, arm);
  return route;
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

/** `GET /v1/models`: what this client may put in `model`. */
export function modelList({ config, router }: Routing, who: Requester) {
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
