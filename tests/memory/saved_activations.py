# Golden check for shared/memory/activations.ts: bytes of the tensors PyTorch autograd actually saves
# for backward in an fp32 GPT-2 block (pre-LN, fused QKV, causal softmax attention, tanh GELU, as
# docs/model.md), counted once per storage and excluding parameters, via saved_tensors_hooks.
# Usage: python3 saved_activations.py '[{"B":2,"T":64,"C":64,"NH":4,"L":2,"V":257}, ...]'
# Prints one JSON list: per shape {perLayer, ends, ...}. perLayer = (all L blocks - none) / L.
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


def build(V, T, L, NH, C, B):
    class Block(nn.Module):
        def __init__(s):
            super().__init__()
            s.ln_1 = nn.LayerNorm(C)
            s.c_attn = nn.Linear(C, 3 * C)
            s.c_proj = nn.Linear(C, C)
            s.ln_2 = nn.LayerNorm(C)
            s.c_fc = nn.Linear(C, 4 * C)
            s.mlp_proj = nn.Linear(4 * C, C)

        def forward(s, x):
            q, k, v = s.c_attn(s.ln_1(x)).split(C, dim=2)
            hs = C // NH
            q = q.view(B, T, NH, hs).transpose(1, 2)
            k = k.view(B, T, NH, hs).transpose(1, 2)
            v = v.view(B, T, NH, hs).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(torch.tril(torch.ones(T, T)) == 0, float('-inf'))
            att = F.softmax(att, dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            x = x + s.c_proj(y)
            h = s.c_fc(s.ln_2(x))
            h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
            return x + s.mlp_proj(h)

    class GPT(nn.Module):
        def __init__(s):
            super().__init__()
            s.wte = nn.Embedding(V, C)
            s.wpe = nn.Embedding(T, C)
            s.h = nn.ModuleList([Block() for _ in range(L)])
            s.ln_f = nn.LayerNorm(C)

        def forward(s, idx, tgt, blocks):
            x = s.wte(idx) + s.wpe(torch.arange(T))
            for b in s.h[:blocks]:
                x = b(x)
            logits = s.ln_f(x) @ s.wte.weight.t()  # tied head
            return F.cross_entropy(logits.view(-1, V), tgt.view(-1))

    return GPT()


def saved_bytes(model, V, T, B, blocks):
    params = {p.data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        if t.data_ptr() not in params:
            st = t.untyped_storage() if hasattr(t, 'untyped_storage') else t.storage()
            seen[t.data_ptr()] = max(seen.get(t.data_ptr(), 0), st.nbytes())
        return t

    idx = torch.randint(0, V, (B, T))
    tgt = torch.randint(0, V, (B, T))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(idx, tgt, blocks)
    return sum(seen.values())


def main():
    torch.manual_seed(0)
    out = []
    for s in json.loads(sys.argv[1]):
        V, T, L, NH, C, B = s['V'], s['T'], s['L'], s['NH'], s['C'], s['B']
        m = build(V, T, L, NH, C, B)
        total = saved_bytes(m, V, T, B, L)
        ends = saved_bytes(m, V, T, B, 0)
        out.append({**s, 'perLayer': (total - ends) / L, 'ends': ends, 'total': total})
    print(json.dumps(out))


if __name__ == '__main__':
    main()
