// Admin controls. The token is asked for once and kept in sessionStorage (gone when the tab
// closes); without it the controls stay hidden. The server is the real gate: a 401 forgets the
// token and hides the controls again, so a wrong token cannot keep buttons that do nothing.

import { ApiError, describeError, postJson } from './api.ts';

const KEY = 'dashboard.adminToken';

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    // storage disabled: the token then lives only as long as this page
  }
}

export type AdminAction = 'pause' | 'resume' | 'checkpoint' | { kick: string };

export function actionPath(a: AdminAction): string {
  return typeof a === 'string' ? `/api/admin/${a}` : `/api/admin/kick/${encodeURIComponent(a.kick)}`;
}

/** Runs an admin action; resolves to a line to show, rejects with ApiError (401 clears the token). */
export async function runAdmin(a: AdminAction): Promise<string> {
  const token = getToken();
  if (!token) throw new ApiError(401, 'NO_TOKEN', 'enter the admin token first');
  try {
    const body = await postJson<unknown>(actionPath(a), {}, { authorization: `Bearer ${token}` });
    const label = typeof a === 'string' ? a : `kick ${a.kick}`;
    return `${label}: ok${body && typeof body === 'object' ? ` ${JSON.stringify(body)}` : ''}`;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) setToken(null);
    throw e;
  }
}

export { describeError };
