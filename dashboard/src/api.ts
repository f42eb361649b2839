// Small typed wrapper over fetch for the coordinator's JSON API. Errors come back as
// {error: {code, message, hint?}} (shared/errors.ts AppError.toJSON); they are surfaced as
// ApiError with the code, so the pages can show e.g. "ERR_ADMIN_TOKEN: ..." verbatim as text.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

async function parse<T>(res: Response): Promise<T> {
  const text = await res.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: fall through with the raw text in the error below
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    const code = typeof err?.code === 'string' ? err.code : `HTTP_${res.status}`;
    const message = typeof err?.message === 'string' ? err.message : text.slice(0, 300) || res.statusText;
    throw new ApiError(res.status, code, message);
  }
  return body as T;
}

export async function getJson<T>(path: string, init: RequestInit = {}): Promise<T> {
  return parse<T>(await fetch(path, { ...init, headers: { accept: 'application/json', ...(init.headers ?? {}) } }));
}

export async function postJson<T>(path: string, body: unknown, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return parse<T>(res);
}

export function describeError(e: unknown): string {
  if (e instanceof ApiError) return `${e.code}: ${e.message}`;
  if (e instanceof Error) return e.message;
  return String(e);
}
