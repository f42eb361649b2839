#!/usr/bin/python3
"""PyTorch mirror of the default run on the built-in arith-rev task, for fast hyper-parameter search.

Mirrors our system exactly where it matters (see docs/model.md, "Teaching the built-in task"):
  data      the train / held-out pairs and the initial weights come from OUR code (dump-task.ts);
  rows      [prompt bytes, response bytes, EOS], inputs = tokens[:-1], targets = tokens[1:],
            loss mask 1 only on response bytes and the EOS, padded to T with EOS (sequences.ts);
  model     GPT-2 as in tests/reference/make_fixture.py (float32 here);
  loss      masked mean over the global batch (= the coordinator's token-weighted mean);
  optimizer torch.optim.AdamW, decay only on 2-D non-embedding weights, clip_grad_norm_,
            linear warmup + WSD or cosine to min-lr (shared/optim), one epoch = one permutation of train;
  eval      greedy decoding of every held-out prompt, exact match, per task.

Defaults = the coordinator's batch-32 defaults of an earlier stage (peak 2e-3, warmup 50, cosine to 2e-5 over
1500 steps, beta2 0.99). Today's npm start defaults are --batch 8 --lr 1e-3 --min-lr 1e-5 --warmup 200 --decay 6000
--schedule wsd --stable-end 4800 on a dump made with the padded-reversed format (docs/model.md, Follow-up runs 3).
  npx tsx bench/arith/dump-task.ts 1 small > /tmp/arith-task-small.json   # answers as the task writes them
  /usr/bin/python3 bench/arith/train_mirror.py /tmp/arith-task-small.json --steps 1500
Prints one JSON line per evaluation and a summary line ("steps to 95%/99%").
"""
import argparse
import base64
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 3)[0] + "/tests/reference")
from make_fixture import forward, lr_at, param_table  # noqa: E402

EOS = 256


def row(prompt, response, T):
    toks = list(prompt.encode()) + list(response.encode()) + [EOS]
    n = len(toks) - 1
    assert n <= T, (prompt, response, T)
    inp = [EOS] * T
    tgt = [EOS] * T
    m = [0] * T
    for t in range(n):
        inp[t], tgt[t] = toks[t], toks[t + 1]
        m[t] = 1 if t + 1 >= len(prompt.encode()) else 0
    return inp, tgt, m


def task_of(prompt):
    if prompt.startswith("rev "):
        return "rev"
    return "add" if "+" in prompt else "sub"


@torch.no_grad()
def evaluate(P, pairs, L, NH, C, T):
    by_len = {}
    for i, (p, r) in enumerate(pairs):
        by_len.setdefault(len(p.encode()), []).append(i)
    outs = [None] * len(pairs)
    for plen, idx in by_len.items():
        x = torch.tensor([list(pairs[i][0].encode()) for i in idx], dtype=torch.long)
        done = torch.zeros(len(idx), dtype=torch.bool)
        gen = [[] for _ in idx]
        while x.shape[1] < T and not bool(done.all()):
            dummy = torch.zeros_like(x)
            logits, _ = forward(P, x, dummy, dummy, L, NH, C)
            nxt = logits[:, -1, :].argmax(dim=-1)
            for j in range(len(idx)):
                if not done[j]:
                    if int(nxt[j]) == EOS:
                        done[j] = True
                    else:
                        gen[j].append(int(nxt[j]))
            x = torch.cat([x, nxt[:, None]], dim=1)
        for j, i in enumerate(idx):
            outs[i] = bytes(b for b in gen[j] if b < 256).decode("utf-8", "replace")
    per = {}
    for (p, r), o in zip(pairs, outs):
        k = task_of(p)
        c, n = per.get(k, (0, 0))
        per[k] = (c + (o == r), n + 1)
    total = sum(c for c, _ in per.values()) / len(pairs)
    return total, {k: c / n for k, (c, n) in sorted(per.items())}, outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("task")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-5)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--decay", type=int, default=1500)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--torch-init", action="store_true", help="ignore our init (for shape changes)")
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--embd", type=int, default=0)
    ap.add_argument("--heads", type=int, default=0)
    ap.add_argument("--sub-repeat", type=int, default=1, help="data mix: each subtraction pair this many times per epoch")
    ap.add_argument("--words-keep", type=int, default=0, help="data mix: keep only the first N reversal words (0 = all)")
    ap.add_argument("--schedule", choices=("cosine", "wsd"), default="cosine",
                    help="wsd: warmup, hold the peak until --stable-end, then linear to --min-lr at --decay")
    ap.add_argument("--stable-end", type=int, default=0, help="wsd: last step at the peak (0 = 80%% of --decay)")
    ap.add_argument("--pad-answers", action="store_true",
                    help="format: fixed-width zero-padded answers (addition 3 digits, subtraction 2), e.g. 12+34=046")
    ap.add_argument("--reverse-answers", action="store_true",
                    help="format: arithmetic answers written least significant digit first (with --pad-answers: 12+34=640)")
    ap.add_argument("--embd-init-scale", type=float, default=1.0,
                    help="init: multiply wte and wpe by this after loading our weights (std 0.02 * X)")
    ap.add_argument("--stop-at", type=float, default=2.0, help="stop once held-out exact match >= this")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    task = json.load(open(a.task))
    cfg = task["config"]
    V, maxT = cfg["vocabSize"], cfg["contextLength"]
    L = a.layers or cfg["nLayer"]
    C = a.embd or cfg["nEmbd"]
    NH = a.heads or cfg["nHead"]
    table = param_table(V, maxT, L, C)
    P, names = {}, []
    if a.torch_init or L != cfg["nLayer"] or C != cfg["nEmbd"]:
        for name, shape in table:
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                t = torch.ones(shape)
            elif len(shape) == 1:
                t = torch.zeros(shape)
            else:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("c_proj.weight") else 0.02
                t = torch.randn(shape) * std
            P[name] = t.requires_grad_(True)
            names.append(name)
    else:
        flat = torch.from_numpy(np.frombuffer(base64.b64decode(task["init"]), dtype="<f4").copy())
        o = 0
        for name, shape in table:
            size = math.prod(shape)
            P[name] = flat[o:o + size].view(shape).clone().requires_grad_(True)
            names.append(name)
            o += size
        assert o == flat.numel()
    if a.embd_init_scale != 1.0:
        with torch.no_grad():
            for k in names:
                if ".wte." in k or ".wpe." in k or k.endswith("wte.weight") or k.endswith("wpe.weight"):
                    P[k].mul_(a.embd_init_scale)

    def fmt(p, r):
        if a.pad_answers and task_of(p) != "rev":
            r = r.zfill(3 if task_of(p) == "add" else 2)
        if a.reverse_answers and task_of(p) != "rev":
            r = r[::-1]
        return p, r

    task["train"] = [fmt(p, r) for p, r in task["train"]]
    task["heldOut"] = [fmt(p, r) for p, r in task["heldOut"]]
    train = []
    words = 0
    for p, r in task["train"]:
        k = task_of(p)
        if k == "rev":
            words += 1
            if a.words_keep and words > a.words_keep:
                continue
        train += [(p, r)] * (a.sub_repeat if k == "sub" else 1)
    print(json.dumps({"train_rows": len(train), **{k: sum(task_of(p) == k for p, _ in train) for k in ("add", "sub", "rev")}}), flush=True)
    rows = [row(p, r, a.T) for p, r in train]
    inp = torch.tensor([r[0] for r in rows], dtype=torch.long)
    tgt = torch.tensor([r[1] for r in rows], dtype=torch.long)
    msk = torch.tensor([r[2] for r in rows], dtype=torch.long)
    held = [tuple(x) for x in task["heldOut"]]
    decay = [P[k] for k in names if P[k].dim() == 2 and ".wte." not in k and ".wpe." not in k]
    no_decay = [P[k] for k in names if not (P[k].dim() == 2 and ".wte." not in k and ".wpe." not in k)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(a.beta1, a.beta2), eps=1e-8)
    N = inp.shape[0]
    gen = torch.Generator().manual_seed(a.seed)
    perm, pos = torch.randperm(N, generator=gen), 0
    t0 = time.time()
    hit95 = hit99 = None
    run = {k: v for k, v in vars(a).items() if k not in ("task",)}
    losses = []
    for step in range(a.steps):
        if pos >= N:
            perm, pos = torch.randperm(N, generator=gen), 0
        ids = perm[pos:pos + a.batch]
        pos += len(ids)
        if a.schedule == "wsd":
            se = a.stable_end or int(0.8 * a.decay)
            if step < a.warmup:
                lr = a.lr * (step + 1) / a.warmup
            elif step < se:
                lr = a.lr
            elif step >= a.decay:
                lr = a.min_lr
            else:
                lr = a.lr + (a.min_lr - a.lr) * (step - se) / (a.decay - se)
        else:
            lr = lr_at(step, a.lr, a.min_lr, min(a.warmup, a.decay), a.decay)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        _, loss = forward(P, inp[ids], tgt[ids], msk[ids], L, NH, C)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_([P[k] for k in names], a.clip)
        opt.step()
        losses.append(loss.item())
        done = step + 1
        if done % a.eval_every == 0 or done == a.steps:
            acc, per, outs = evaluate(P, held, L, NH, C, a.T)
            print(json.dumps({"step": done, "loss": round(sum(losses[-a.eval_every:]) / len(losses[-a.eval_every:]), 4),
                              "acc": round(acc, 3), **{k: round(v, 3) for k, v in per.items()},
                              "s": round(time.time() - t0, 1)}), flush=True)
            if acc >= 0.95 and hit95 is None:
                hit95 = done
            if acc >= 0.99 and hit99 is None:
                hit99 = done
            if acc >= a.stop_at:
                break
    print(json.dumps({"summary": run, "steps_to_95": hit95, "steps_to_99": hit99, "final_acc": acc,
                      "final_per_task": per}), flush=True)


if __name__ == "__main__":
    main()
