/**
 * The part of Kong's PDK the suite uses, typed as it really behaves through kong-pdk 0.6
 * and Kong 3.9 (KONG.md §5, §9, §11) — kong-pdk's own .d.ts is wrong in places
 * (getRawBody returns one Uint8Array, headers are arrays of strings).
 * The runtime object is kong-pdk's RPC proxy (`kong-pdk/pdk`); every call is a round trip.
 */
export type KongHeaders = Record<string, string[]>;

export interface KongConsumer {
  id: string;
  username?: string | null;
  custom_id?: string | null;
  tags?: string[] | null;
}

export interface KongPDK {
  request: {
    getHeaders(max?: number): Promise<KongHeaders>;
    getHeader(name: string): Promise<string | undefined>;
    getMethod(): Promise<string>;
    getPath(): Promise<string>;
    /** Kong 3.8+: `0` reads a body that was buffered to a temp file, with no cap. */
    getRawBody(max?: number): Promise<Uint8Array | undefined>;
  };
  nginx: {
    /** An nginx variable (`ngx.var[name]`); not in the log phase. */
    getVar(name: string): Promise<string | undefined>;
  };
  service: {
    request: {
      setHeader(name: string, value: string): Promise<void>;
      /** Adds a value, keeping the ones already set (each goes upstream as its own header line). */
      addHeader(name: string, value: string): Promise<void>;
    };
  };
  client: {
    getConsumer(): Promise<KongConsumer | undefined | null>;
    getCredential(): Promise<{ id: string } | undefined | null>;
  };
  router: {
    getRoute(): Promise<{ id: string } | undefined | null>;
    getService(): Promise<{ id: string } | undefined | null>;
  };
  response: {
    /** Returns at once; Kong never answers it (access: later handlers are skipped). */
    exit(status: number, body?: unknown, headers?: Record<string, string>): Promise<void>;
  };
  log: {
    /** A JSON string in the log phase (Kong encodes it before crossing the socket). */
    serialize(): Promise<string>;
    err(...args: unknown[]): Promise<void>;
    warn(...args: unknown[]): Promise<void>;
  };
}
