// What the conformance page exposes to its driver as globalThis.__conformance (types only,
// shared by entry.ts in the page and runner.ts in Node).

export interface PageInfo {
  adapter: string;
  software: boolean;
  userAgent: string;
  /** Case names, in suite order. */
  names: string[];
}

export interface CaseResult {
  ok: boolean;
  ms: number;
  error?: string;
  stack?: string;
}

export interface PageApi {
  /** Resolves once the device, harness and case list are ready; rejects with why not. */
  info(): Promise<PageInfo>;
  run(name: string): Promise<CaseResult>;
}
