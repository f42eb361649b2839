#!/usr/bin/python3
"""Golden fixture for the CPU reference (llm.c test_gpt2.c style), computed by PyTorch.

Usage (npm run fixture):
  npx tsx tests/reference/write-init.ts | /usr/bin/python3 tests/reference/make_fixture.py [out.bin]

Reads the init stream (GPTINIT1, layout in fixture.ts) on stdin: config, hyperparameters, the
micro-batch and the initial parameters from our TypeScript initParameters. Builds its own
GPT-2 here (torch only, float64): learned token+position embeddings, pre-LN blocks (eps 1e-5),
fused QKV split q|k|v, causal multi-head attention, 4x MLP with tanh GELU, final LN, LM head tied
to wte; loss = mean cross-entropy over positions with mask 1. Writes GPTFIX01: the header and
inputs again, logits, loss, every gradient, then 10 steps of torch.optim.AdamW (decay only on the
linear weights, global-norm clipping, warmup+cosine LR) recording losses, norms, final params.
"""
import math
import struct
import sys

import torch
import torch.nn.functional as F

HEADER_INTS = 16
HEADER_F64 = 8
VERSION = 1


def param_table(V, maxT, L, C):
    """(name, shape) in the order of shared/model/parameters.ts (HF GPT-2 names, Conv1D [in,out])."""
    t = [("transformer.wte.weight", (V, C)), ("transformer.wpe.weight", (maxT, C))]
    for l in range(L):
        p = f"transformer.h.{l}."
        t += [
            (p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
            (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
            (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
            (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
            (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
            (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,)),
        ]
    t += [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))]
    return t


def forward(P, inputs, targets, mask, L, NH, C):
    B, T = inputs.shape
    hs = C // NH
    x = P["transformer.wte.weight"][inputs] + P["transformer.wpe.weight"][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        p = f"transformer.h.{l}."
        h = F.layer_norm(x, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps=1e-5)
        qkv = h @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, NH, hs).transpose(1, 2)
        k = k.view(B, T, NH, hs).transpose(1, 2)
        v = v.view(B, T, NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps=1e-5)
        h = F.gelu(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], eps=1e-5)
    logits = x @ P["transformer.wte.weight"].T
    V = logits.shape[-1]
    ce = F.cross_entropy(logits.view(-1, V), targets.view(-1).clamp(0, V - 1), reduction="none")
    m = mask.view(-1).to(logits.dtype)
    n = m.sum()
    loss = (ce * m).sum() / n if n > 0 else (ce * 0).sum()
    return logits, loss


def lr_at(step, lr, min_lr, warmup, total):
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    r = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * r)) * (lr - min_lr)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/reference/gpt2_tiny.bin"
    data = sys.stdin.buffer.read()
    if data[:8] != b"GPTINIT1":
        sys.exit("make_fixture: stdin is not a GPTINIT1 stream; run: "
                 "npx tsx tests/reference/write-init.ts | /usr/bin/python3 tests/reference/make_fixture.py")
    off = 8
    ints = struct.unpack_from("<16i", data, off); off += 4 * HEADER_INTS
    f64s = struct.unpack_from("<8d", data, off); off += 8 * HEADER_F64
    version, V, maxT, L, NH, C, B, T, n_params, n_steps, seed, warmup, total = ints[:13]
    assert version == VERSION, f"init stream version {version}, expected {VERSION}"
    lr, min_lr, beta1, beta2, eps, wd, max_norm = f64s[:7]
    header = data[:off]
    n = B * T

    def take(fmt, count):
        nonlocal off
        size = struct.calcsize(fmt) * count
        arr = struct.unpack_from(f"<{count}{fmt}", data, off)
        off += size
        return arr

    inputs = torch.tensor(take("i", n), dtype=torch.long).view(B, T)
    targets = torch.tensor(take("i", n), dtype=torch.long).view(B, T)
    mask = torch.tensor(take("i", n), dtype=torch.long).view(B, T)
    flat = torch.tensor(take("f", n_params), dtype=torch.float32)
    assert off == len(data), f"{len(data) - off} trailing bytes in the init stream"

    table = param_table(V, maxT, L, C)
    assert sum(math.prod(s) for _, s in table) == n_params, "parameter table size mismatch"
    P, names, o = {}, [], 0
    for name, shape in table:
        size = math.prod(shape)
        P[name] = flat[o:o + size].to(torch.float64).view(shape).clone().requires_grad_(True)
        names.append(name)
        o += size

    def flat_of(get):
        return torch.cat([get(P[k]).reshape(-1) for k in names]).to(torch.float32)

    logits, loss = forward(P, inputs, targets, mask, L, NH, C)
    loss.backward()
    logits0 = logits.detach().to(torch.float32).reshape(-1)
    loss0 = loss.item()
    grads0 = flat_of(lambda p: p.grad)

    # Weight decay only on the linear (Conv1D) weights: 2-D tensors other than the embeddings.
    decay = [P[k] for k in names if P[k].dim() == 2 and ".wte." not in k and ".wpe." not in k]
    no_decay = [P[k] for k in names if not (P[k].dim() == 2 and ".wte." not in k and ".wpe." not in k)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(beta1, beta2), eps=eps)
    losses, norms = [], []
    for step in range(n_steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, lr, min_lr, warmup, total)
        opt.zero_grad()
        _, loss = forward(P, inputs, targets, mask, L, NH, C)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_([P[k] for k in names], max_norm)))
        losses.append(loss.item())
        opt.step()
    final = flat_of(lambda p: p.detach())

    with open(out_path, "wb") as f:
        f.write(b"GPTFIX01" + header[8:])
        f.write(data[len(header):])  # inputs, targets, mask, initial params, byte for byte
        f.write(logits0.numpy().astype("<f4").tobytes())
        f.write(struct.pack("<d", loss0))
        f.write(grads0.numpy().astype("<f4").tobytes())
        f.write(struct.pack(f"<{n_steps}d", *losses))
        f.write(struct.pack(f"<{n_steps}d", *norms))
        f.write(final.numpy().astype("<f4").tobytes())
    print(f"make_fixture: wrote {out_path}: loss {loss0:.6f}, after {n_steps} steps {losses[-1]:.6f}, "
          f"torch {torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
