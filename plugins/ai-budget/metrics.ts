import { Counter, type Registry } from 'prom-client';

/** ai-budget's events, per limit name (never a consumer or a key: labels stay few). */
export class BudgetMetrics {
  readonly refused: Counter<'limit'>;
  readonly clamped: Counter<'limit'>;
  readonly softExceeded: Counter<'limit'>;
  readonly localReservations: Counter;
  readonly leasedReservations: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.refused = new Counter({
      name: 'aigw_budget_refused_total',
      help: 'Requests refused (429) because a hard budget limit was spent.',
      labelNames: ['limit'],
      registers,
    });
    this.clamped = new Counter({
      name: 'aigw_budget_clamped_total',
      help: 'Requests whose max_tokens was lowered to what the budget affords.',
      labelNames: ['limit'],
      registers,
    });
    this.softExceeded = new Counter({
      name: 'aigw_budget_soft_exceeded_total',
      help: 'Requests served past a soft budget limit.',
      labelNames: ['limit'],
      registers,
    });
    this.localReservations = new Counter({
      name: 'aigw_budget_local_reservations_total',
      help: 'Reservations counted on this node alone because the shared store was unavailable.',
      registers,
    });
    this.leasedReservations = new Counter({
      name: 'aigw_budget_leased_reservations_total',
      help: "Reservations admitted from this node's lease, without a store round trip.",
      registers,
    });
  }
}
