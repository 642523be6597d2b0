// The slice of autocannon's programmatic API the bench uses (the package ships no types and
// @types/autocannon would be one more dependency for a handful of fields).
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  export interface Options {
    url: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    connections?: number;
    duration?: number;
    timeout?: number;
    pipelining?: number;
    /** Counted in `mismatches` when it returns false. */
    verifyBody?: (body: string) => boolean;
    /** Called once for each connection's Client before it connects. */
    setupClient?: (client: Client) => void;
  }

  /** One entry of a connection's request sequence; the sequence starts over after the last. */
  export interface Request {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string;
    /** Called before each send of this request; falsy starts the sequence over. */
    setupRequest?: (request: Request, context: Record<string, unknown>) => Request | null | undefined;
    /** Called with each response to this request, before the connection sends its next one. */
    onResponse?: (status: number, body: string, context: Record<string, unknown>, headers: Record<string, string | string[]>) => void;
  }

  /** One connection (documented as "Client API" in autocannon's README). */
  export interface Client extends EventEmitter {
    setRequests(requests: Request[]): void;
  }

  export interface Histogram {
    average: number;
    min: number;
    max: number;
    p50: number;
    p90: number;
    p99: number;
    total: number;
  }

  export interface Result {
    duration: number;
    errors: number;
    timeouts: number;
    mismatches: number;
    non2xx: number;
    statusCodeStats: Record<string, { count: number }>;
    latency: Histogram;
    requests: Histogram & { sent: number };
  }

  export interface Instance extends EventEmitter, PromiseLike<Result> {
    stop(): void;
  }

  export default function autocannon(options: Options): Instance;
}
