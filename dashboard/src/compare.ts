// The playground's Compare mode (page wiring; the decisions are compare-view.ts): one prompt, two
// samples from POST /api/generate side by side, and "A is better" / "B is better" / "Neither".
// A or B posts {prompt, chosen, rejected} to /api/preferences (stored in the run directory for
// preference tuning); Neither stores nothing. Samples are shown as text (textContent) only.

import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { describeError, postJson } from './api.ts';
import { choiceMessage, choiceState, compareRequests, countText, modeFromHash, preferenceBody, type Choice, type ShownPair } from './compare-view.ts';
import { byId, clear, el, setText } from './dom.ts';
import { suggestionPrompts } from './eval-samples.ts';
/** What Compare reads of a POST /api/generate answer. */
interface SampleAnswer {
  text: string;
  step: number;
  finishReason: string;
}

interface PreferenceAnswer {
  count: number;
}

const SEED_RANGE = 2 ** 32;

function showCount(count: number | null | undefined): void {
  const node = byId('cmp-count');
  setText(node, countText(count));
  if (typeof count === 'number') node.dataset.count = String(count);
}

/** Switches between the Generate and Compare sections from the URL hash. */
function applyMode(): void {
  const mode = modeFromHash(location.hash);
  byId('generate-mode').hidden = mode !== 'generate';
  byId('compare-mode').hidden = mode !== 'compare';
  byId('mode-generate').setAttribute('aria-selected', String(mode === 'generate'));
  byId('mode-compare').setAttribute('aria-selected', String(mode === 'compare'));
}

/** Mounts the Compare mode; `status` (one GET /api/status) gives the stored count and the task's prompts. */
export function mountCompare(status: Promise<StatusSnapshot>): void {
  const form = byId<HTMLFormElement>('cmp-form');
  const submit = byId<HTMLButtonElement>('cmp-submit');
  const pairBox = byId('cmp-pair');
  const err = byId('cmp-error');
  const msg = byId('cmp-msg');
  const buttons: Record<Choice, HTMLButtonElement> = {
    A: byId<HTMLButtonElement>('cmp-pick-a'),
    B: byId<HTMLButtonElement>('cmp-pick-b'),
    neither: byId<HTMLButtonElement>('cmp-neither'),
  };
  let shown: ShownPair | null = null;

  const enable = (choose: boolean, neither: boolean): void => {
    buttons.A.disabled = !choose;
    buttons.B.disabled = !choose;
    buttons.neither.disabled = !neither;
  };

  byId('mode-generate').addEventListener('click', () => { location.hash = ''; applyMode(); });
  byId('mode-compare').addEventListener('click', () => { location.hash = 'compare'; applyMode(); });
  window.addEventListener('hashchange', applyMode);
  applyMode();
  status.then((snap) => {
    showCount(snap.preferences?.count ?? null);
    // The task's example prompts (as in Generate): a click fills the prompt and samples a pair.
    const prompts = suggestionPrompts(snap);
    if (prompts.length === 0) return;
    const box = byId('cmp-suggestions');
    for (const p of prompts) {
      const b = el('button', { className: 'chip', attrs: { type: 'button', 'data-prompt': p } }, p);
      b.addEventListener('click', () => {
        byId<HTMLTextAreaElement>('cmp-prompt').value = p;
        form.requestSubmit();
      });
      box.append(b);
    }
    box.hidden = false;
  }, () => showCount(null));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setText(err, '');
    setText(msg, '');
    let reqs;
    try {
      reqs = compareRequests({
        prompt: byId<HTMLTextAreaElement>('cmp-prompt').value,
        maxTokens: byId<HTMLInputElement>('cmp-max').value,
        temperature: byId<HTMLInputElement>('cmp-temp').value,
        seed: byId<HTMLInputElement>('cmp-seed').value,
      }, () => Math.floor(Math.random() * SEED_RANGE));
    } catch (e) {
      setText(err, describeError(e));
      return;
    }
    submit.disabled = true;
    enable(false, false);
    shown = null;
    pairBox.dataset.state = 'running';
    try {
      const [a, b] = await Promise.all(reqs.map((r) => postJson<SampleAnswer>('/api/generate', r)));
      shown = { prompt: reqs[0].prompt, a: String(a.text ?? ''), b: String(b.text ?? '') };
      for (const [side, res, req] of [['a', a, reqs[0]], ['b', b, reqs[1]]] as const) {
        const box = byId(`cmp-${side}`);
        clear(box);
        box.append(el('span', { className: 'prompt' }, req.prompt), el('span', { className: 'gen', testid: `cmp-${side}-text` }, String(res.text ?? '')));
        box.dataset.seed = String(req.seed);
        setText(byId(`cmp-${side}-meta`), `seed ${req.seed} · step ${res.step} · ${res.finishReason}`);
      }
      const state = choiceState(shown);
      setText(byId('cmp-note'), state.note);
      enable(state.canChoose, true);
      pairBox.dataset.state = 'ready';
    } catch (e) {
      setText(err, describeError(e));
      pairBox.dataset.state = 'error';
    } finally {
      submit.disabled = false;
    }
  });

  for (const choice of ['A', 'B', 'neither'] as const) {
    buttons[choice].addEventListener('click', async () => {
      if (!shown) return;
      const body = preferenceBody(choice, shown);
      setText(err, '');
      enable(false, false); // one choice per pair
      if (!body) {
        setText(msg, choiceMessage(choice, null));
        msg.dataset.choice = choice;
        return;
      }
      try {
        const r = await postJson<PreferenceAnswer>('/api/preferences', body);
        showCount(r.count);
        setText(msg, choiceMessage(choice, r.count));
        msg.dataset.choice = choice;
      } catch (e) {
        setText(err, describeError(e));
        enable(true, true); // nothing was stored: the same choice can be tried again
      }
    });
  }
}
