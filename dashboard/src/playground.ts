// The playground page: POST /api/generate and show the completion (as text) and why it stopped;
// its Compare mode (compare.ts) collects preference pairs.

import './styles.css';
import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { describeError, getJson, postJson } from './api.ts';
import { byId, clear, el, setText } from './dom.ts';
import { markNav } from './nav.ts';
import { suggestionPrompts } from './eval-samples.ts';
import { mountCompare } from './compare.ts';

markNav();

export interface GenerateRequest {
  prompt: string;
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
}

export interface GenerateResponse {
  text: string;
  tokens: number | number[];
  finishReason: 'eos' | 'length' | 'stop' | string;
  step: number;
}

const FINISH: Record<string, string> = {
  eos: 'eos: the model ended the text (end-of-sequence token)',
  length: 'length: reached the max tokens limit (or the context length)',
  stop: 'stop: the completion hit a stop sequence',
};

export function explainFinish(reason: string): string {
  return FINISH[reason] ?? reason;
}

function readNumber(id: string, label: string, integer: boolean): number {
  const input = byId<HTMLInputElement>(id);
  const v = Number(input.value);
  if (input.value.trim() === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < 0) {
    throw new Error(`${label} must be a ${integer ? 'whole ' : ''}number ≥ 0`);
  }
  return v;
}

function request(): GenerateRequest {
  const prompt = byId<HTMLTextAreaElement>('gen-prompt').value;
  if (prompt.length === 0) throw new Error('enter a prompt');
  const topK = readNumber('gen-topk', 'Top-k', true);
  const stop = byId<HTMLInputElement>('gen-stop').value;
  return {
    prompt,
    maxTokens: readNumber('gen-max', 'Max tokens', true),
    temperature: readNumber('gen-temp', 'Temperature', false),
    ...(topK > 0 ? { topK } : {}),
    topP: readNumber('gen-topp', 'Top-p', false),
    seed: readNumber('gen-seed', 'Seed', true),
    ...(stop ? { stop: [stop] } : {}),
  };
}

const form = byId<HTMLFormElement>('gen-form');
const submit = byId<HTMLButtonElement>('gen-submit');
const out = byId('gen-output');
const err = byId('gen-error');

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  setText(err, '');
  let req: GenerateRequest;
  try {
    req = request();
  } catch (e) {
    setText(err, describeError(e));
    return;
  }
  submit.disabled = true;
  out.dataset.state = 'running';
  const t0 = performance.now();
  try {
    const res = await postJson<GenerateResponse>('/api/generate', req);
    clear(out);
    out.append(el('span', { className: 'prompt' }, req.prompt), el('span', { className: 'gen', testid: 'gen-text' }, String(res.text ?? '')));
    setText(byId('gen-finish'), explainFinish(String(res.finishReason)));
    byId('gen-finish').dataset.reason = String(res.finishReason);
    setText(byId('gen-tokens'), Array.isArray(res.tokens) ? res.tokens.length : String(res.tokens));
    setText(byId('gen-step'), String(res.step));
    setText(byId('gen-time'), `${((performance.now() - t0) / 1000).toFixed(2)} s`);
    out.dataset.state = 'done';
  } catch (e) {
    setText(err, describeError(e));
    out.dataset.state = 'error';
  } finally {
    submit.disabled = false;
  }
});

// Prompt suggestions of the task being trained (status.task.examplePrompts, the built-in task's
// prompts): one click fills the prompt, sets greedy decoding and a short answer, and generates.
// Prompts are shown as button text (textContent), never as markup.
const statusReq = getJson<StatusSnapshot>('/api/status');
// Compare mode (#compare): two samples side by side, the better one stored as a preference pair.
mountCompare(statusReq);

statusReq.then((snap) => {
  const prompts = suggestionPrompts(snap);
  if (prompts.length === 0) return;
  const box = byId('gen-suggestions');
  for (const p of prompts) {
    const b = el('button', { className: 'chip', attrs: { type: 'button', 'data-prompt': p } }, p);
    b.addEventListener('click', () => {
      byId<HTMLTextAreaElement>('gen-prompt').value = p;
      byId<HTMLInputElement>('gen-temp').value = '0';
      byId<HTMLInputElement>('gen-max').value = '8';
      form.requestSubmit();
    });
    box.append(b);
  }
  // How the task writes its answers when not as people do (the built-in task: units first, zero-padded).
  const note = snap.task?.answerNote;
  if (typeof note === 'string' && note.length > 0) box.append(el('p', { className: 'hint', attrs: { 'data-answer-note': '' } }, note));
  box.hidden = false;
}, () => undefined);
