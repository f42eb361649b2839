// The admin panel on the live dashboard: a token form while locked; pause / resume / checkpoint
// (and Kick buttons in the workers table) once a token is entered. A refusal (401) locks again.

import { ApiError } from './api.ts';
import { describeError, getToken, runAdmin, setToken, type AdminAction } from './admin.ts';
import { byId, setText } from './dom.ts';

let notify: () => void = () => {};
let afterAction: () => void = () => {};

function message(text: string, ok: boolean): void {
  const m = byId('admin-msg');
  m.dataset.ok = String(ok);
  setText(m, text);
}

function applyLock(): void {
  const unlocked = getToken() !== null;
  byId('admin-locked').hidden = unlocked;
  byId('admin-controls').hidden = !unlocked;
  notify();
}

async function act(a: AdminAction): Promise<void> {
  try {
    message(await runAdmin(a), true);
    afterAction();
  } catch (e) {
    message(`refused: ${describeError(e)}`, false);
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) applyLock();
  }
}

/** Kick handler for the workers table, or undefined while locked (no buttons drawn). */
export function adminKick(): ((id: string) => void) | undefined {
  return getToken() ? (id: string) => void act({ kick: id }) : undefined;
}

/**
 * onChange: the lock state changed (redraw Kick buttons). afterAction: an action succeeded (the
 * page refreshes its status once, so e.g. "paused" shows without waiting for the next push).
 */
export function mountAdmin(opts: { onChange: () => void; afterAction: () => void }): void {
  notify = opts.onChange;
  afterAction = opts.afterAction;
  const form = byId<HTMLFormElement>('admin-form');
  const input = byId<HTMLInputElement>('admin-token');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) {
      message('enter the token printed by the coordinator at start (or its --admin-token)', false);
      return;
    }
    setToken(t);
    input.value = '';
    message('token stored for this tab; the server checks it on each action', true);
    applyLock();
  });
  byId('admin-lock').addEventListener('click', () => {
    setToken(null);
    message('locked', true);
    applyLock();
  });
  byId('admin-pause').addEventListener('click', () => void act('pause'));
  byId('admin-resume').addEventListener('click', () => void act('resume'));
  byId('admin-checkpoint').addEventListener('click', () => void act('checkpoint'));
  applyLock();
}
