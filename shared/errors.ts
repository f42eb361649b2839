// Named error codes (fastify FST_ERR_* style). Every error says where it happened and hints at
// the fix; HTTP handlers map `status`, the protocol maps `code` to a rejection.

export class AppError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
    readonly hint?: string,
  ) {
    super(hint ? `${message} (hint: ${hint})` : message);
    this.name = 'AppError';
  }

  toJSON(): { error: { code: string; message: string; hint?: string } } {
    return { error: { code: this.code, message: this.message, ...(this.hint ? { hint: this.hint } : {}) } };
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}
