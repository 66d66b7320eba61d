import { HierarchicalNSW } from 'hnswlib-node';

export interface Match {
  id: string;
  /** Cosine similarity (vectors are unit length: the dot product). */
  similarity: number;
}

/** Up to this many vectors, an exact scan (faster than a graph at this size, and never misses). */
export const FLAT_LIMIT = 2048;
const HNSW_M = 16;
const HNSW_EF_CONSTRUCTION = 100;
const HNSW_EF_SEARCH = 64;

/**
 * Nearest neighbour by cosine similarity among unit vectors, for one namespace and partition.
 * Small indexes are scanned exactly; past FLAT_LIMIT vectors it moves to an HNSW graph
 * (hnswlib-node, inner-product space), which answers in well under a millisecond at 100k
 * vectors and may, rarely, miss the true nearest (a cache miss, never a wrong match: the
 * threshold is checked on the similarity it returns).
 */
export class VectorIndex {
  private readonly flatIds: string[] = [];
  private flat: Float32Array;
  private graph?: HierarchicalNSW;
  private readonly labels = new Map<string, number>();
  private readonly idOf = new Map<number, string>();
  private nextLabel = 0;

  constructor(readonly dimensions: number) {
    this.flat = new Float32Array(dimensions * 16);
  }

  get size(): number {
    return this.graph ? this.labels.size : this.flatIds.length;
  }

  has(id: string): boolean {
    return this.graph ? this.labels.has(id) : this.flatIds.includes(id);
  }

  /** Adds (or replaces) the vector of `id`. */
  add(id: string, vector: Float32Array): void {
    if (vector.length !== this.dimensions) throw new Error('vector of another size');
    this.remove(id);
    if (!this.graph && this.flatIds.length >= FLAT_LIMIT) this.toGraph();
    if (this.graph) {
      this.addToGraph(id, vector);
      return;
    }
    const at = this.flatIds.length;
    if ((at + 1) * this.dimensions > this.flat.length) {
      const grown = new Float32Array(this.flat.length * 2);
      grown.set(this.flat);
      this.flat = grown;
    }
    this.flat.set(vector, at * this.dimensions);
    this.flatIds.push(id);
  }

  remove(id: string): void {
    if (this.graph) {
      const label = this.labels.get(id);
      if (label === undefined) return;
      this.graph.markDelete(label);
      this.labels.delete(id);
      this.idOf.delete(label);
      // Deleted points stay in the graph: rebuild it once they outnumber the live ones.
      if (this.graph.getCurrentCount() > 2 * this.labels.size + FLAT_LIMIT) this.rebuildGraph();
      return;
    }
    const at = this.flatIds.indexOf(id);
    if (at < 0) return;
    // Swap with the last vector: order does not matter to a scan.
    const last = this.flatIds.length - 1;
    if (at !== last) {
      this.flat.copyWithin(at * this.dimensions, last * this.dimensions, (last + 1) * this.dimensions);
      this.flatIds[at] = this.flatIds[last]!;
    }
    this.flatIds.pop();
  }

  /** The nearest vector, if any is at least `minSimilarity` close. */
  nearest(vector: Float32Array, minSimilarity: number): Match | undefined {
    const best = this.graph ? this.searchGraph(vector) : this.scan(vector);
    return best && best.similarity >= minSimilarity ? best : undefined;
  }

  private scan(vector: Float32Array): Match | undefined {
    const d = this.dimensions;
    let bestAt = -1;
    let best = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < this.flatIds.length; i++) {
      let dot = 0;
      const base = i * d;
      for (let j = 0; j < d; j++) dot += this.flat[base + j]! * vector[j]!;
      if (dot > best) {
        best = dot;
        bestAt = i;
      }
    }
    return bestAt < 0 ? undefined : { id: this.flatIds[bestAt]!, similarity: best };
  }

  private searchGraph(vector: Float32Array): Match | undefined {
    const graph = this.graph!;
    if (this.labels.size === 0) return undefined;
    try {
      const { neighbors, distances } = graph.searchKnn(Array.from(vector), 1);
      const label = neighbors[0];
      const id = label === undefined ? undefined : this.idOf.get(label);
      // Inner-product space: distance = 1 - dot.
      return id === undefined ? undefined : { id, similarity: 1 - distances[0]! };
    } catch {
      return undefined; // too few live points for the graph to answer: no match
    }
  }

  private toGraph(): void {
    const graph = new HierarchicalNSW('ip', this.dimensions);
    graph.initIndex({
      maxElements: FLAT_LIMIT * 2,
      m: HNSW_M,
      efConstruction: HNSW_EF_CONSTRUCTION,
      randomSeed: 100,
    });
    graph.setEf(HNSW_EF_SEARCH);
    this.graph = graph;
    const d = this.dimensions;
    const ids = this.flatIds.splice(0);
    for (const [i, id] of ids.entries()) this.addToGraph(id, this.flat.subarray(i * d, (i + 1) * d));
    this.flat = new Float32Array(0);
  }

  private rebuildGraph(): void {
    const old = this.graph!;
    const live = [...this.labels].map(([id, label]) => [id, Float32Array.from(old.getPoint(label))] as const);
    this.graph = undefined;
    this.labels.clear();
    this.idOf.clear();
    this.flat = new Float32Array(this.dimensions * 16);
    for (const [id, vector] of live) this.add(id, vector);
  }

  private addToGraph(id: string, vector: Float32Array): void {
    const graph = this.graph!;
    if (graph.getCurrentCount() >= graph.getMaxElements()) graph.resizeIndex(graph.getMaxElements() * 2);
    const label = this.nextLabel++;
    graph.addPoint(Array.from(vector), label);
    this.labels.set(id, label);
    this.idOf.set(label, id);
  }
}
