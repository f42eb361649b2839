#!/usr/bin/env python3
"""Independent check of an exported model: a from-scratch GPT-2 in PyTorch (no other package).

Reads DIR/model.safetensors (parsed by hand: u64 header length, JSON header, raw data) and
DIR/config.json, builds GPT-2 (pre-LN, fused QKV in Conv1D [in, out] layout, causal attention,
tanh GELU, tied LM head), and greedily continues each prompt (a list of token ids) until the
end-of-sequence token or max_new tokens, recomputing the whole sequence each step (no KV cache,
so it is independent of the coordinator's cached decoder).

usage: /usr/bin/python3 gpt2_check.py DIR PROMPTS_JSON MAX_NEW
  PROMPTS_JSON: [[ids...], ...]; prints {"outputs": [[ids...], ...], "margins": [min top1-top2 logit gap]}
"""
import json
import math
import struct
import sys

import torch

DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        dtype, size = DTYPES[t["dtype"]]
        b, e = t["data_offsets"]
        count = math.prod(t["shape"]) if t["shape"] else 1
        assert e - b == count * size, name
        ten = torch.frombuffer(bytearray(data[b:e]), dtype=dtype).reshape(t["shape"])
        out[name] = ten.to(torch.float64)  # compute in float64: greedy ties are then ours to lose
    return out, header.get("__metadata__", {})


class GPT2:
    def __init__(self, w, cfg):
        self.w = w
        self.L = cfg["n_layer"]
        self.H = cfg["n_head"]
        self.C = cfg["n_embd"]
        self.eps = cfg["layer_norm_epsilon"]
        assert cfg["activation_function"] == "gelu_new"

    def ln(self, x, p):
        return torch.nn.functional.layer_norm(x, (self.C,), self.w[p + ".weight"], self.w[p + ".bias"], self.eps)

    def lin(self, x, p):
        return x @ self.w[p + ".weight"] + self.w[p + ".bias"]  # Conv1D: weight is [in, out]

    def logits(self, ids):
        w, C, H = self.w, self.C, self.H
        T = len(ids)
        x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:T]
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for l in range(self.L):
            p = f"transformer.h.{l}."
            h = self.ln(x, p + "ln_1")
            q, k, v = self.lin(h, p + "attn.c_attn").split(C, dim=-1)
            q, k, v = (t.view(T, H, C // H).transpose(0, 1) for t in (q, k, v))
            att = (q @ k.transpose(-1, -2)) / math.sqrt(C // H)
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(0, 1).reshape(T, C)
            x = x + self.lin(y, p + "attn.c_proj")
            h = self.ln(x, p + "ln_2")
            h = self.lin(h, p + "mlp.c_fc")
            h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
            x = x + self.lin(h, p + "mlp.c_proj")
        x = self.ln(x, "transformer.ln_f")
        return x @ w["transformer.wte.weight"].T  # tied LM head


def main():
    d, prompts, max_new = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    w, meta = read_safetensors(d + "/model.safetensors")
    assert meta.get("format") == "pt", meta
    with open(d + "/config.json") as f:
        cfg = json.load(f)
    model = GPT2(w, cfg)
    eos = cfg["eos_token_id"]
    outs, margins = [], []
    with torch.no_grad():
        for prompt in prompts:
            ids, gen, margin = list(prompt), [], float("inf")
            for _ in range(max_new):
                if len(ids) >= cfg["n_positions"]:
                    break
                last = model.logits(torch.tensor(ids))[-1]
                top = torch.topk(last, 2)
                margin = min(margin, float(top.values[0] - top.values[1]))
                nxt = int(top.indices[0])
                gen.append(nxt)
                ids.append(nxt)
                if nxt == eos:
                    break
            outs.append(gen)
            margins.append(margin)
    print(json.dumps({"outputs": outs, "margins": margins}))


if __name__ == "__main__":
    main()
