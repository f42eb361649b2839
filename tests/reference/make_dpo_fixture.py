#!/usr/bin/python3
"""DPO golden fixture (issue 16), computed by PyTorch in float64.

Usage (npm run fixture:dpo):
  npx tsx tests/reference/write-dpo-init.ts | /usr/bin/python3 tests/reference/make_dpo_fixture.py [out.bin]

Reads the DPOINIT1 stream (layout in dpo-fixture.ts): the tiny config, beta, 2*P rows (chosen,
rejected per pair) with their masks, the policy and the reference parameters. Uses the GPT-2 of
make_fixture.py; a row's sequence log-prob is the sum of log_softmax(logits)[target] over its
masked-in positions; loss = mean over pairs of -logsigmoid(beta * ((pw - rw) - (pl - rl))).
Writes DPOFIX01: the header and rows again, both sequence log-probs, the loss and the gradient
of the loss with respect to every policy parameter.
"""
import math
import struct
import sys

import torch
import torch.nn.functional as F

from make_fixture import forward, param_table

VERSION = 1


def seq_logprobs(P, inputs, targets, mask, L, NH, C):
    logits, _ = forward(P, inputs, targets, mask, L, NH, C)
    lp = torch.log_softmax(logits, dim=-1)
    V = logits.shape[-1]
    tok = lp.gather(-1, targets.clamp(0, V - 1).unsqueeze(-1)).squeeze(-1)
    return (tok * mask.to(tok.dtype)).sum(dim=1)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/reference/dpo_tiny.bin"
    data = sys.stdin.buffer.read()
    if data[:8] != b"DPOINIT1":
        sys.exit("make_dpo_fixture: stdin is not a DPOINIT1 stream; run: npm run fixture:dpo")
    off = 8
    ints = struct.unpack_from("<12i", data, off); off += 48
    version, V, maxT, L, NH, C, pairs, T, n_params = ints[:9]
    assert version == VERSION, f"init stream version {version}, expected {VERSION}"
    (beta,) = struct.unpack_from("<d", data, off); off += 8
    R = 2 * pairs

    def take(fmt, count):
        nonlocal off
        arr = struct.unpack_from(f"<{count}{fmt}", data, off)
        off += struct.calcsize(fmt) * count
        return arr

    inputs = torch.tensor(take("i", R * T), dtype=torch.long).view(R, T)
    targets = torch.tensor(take("i", R * T), dtype=torch.long).view(R, T)
    mask = torch.tensor(take("i", R * T), dtype=torch.long).view(R, T)
    rows_end = off
    policy_flat = torch.tensor(take("f", n_params), dtype=torch.float32)
    ref_flat = torch.tensor(take("f", n_params), dtype=torch.float32)
    assert off == len(data), f"{len(data) - off} trailing bytes in the init stream"

    table = param_table(V, maxT, L, C)
    assert sum(math.prod(s) for _, s in table) == n_params, "parameter table size mismatch"

    def tensors(flat, grad):
        P, o = {}, 0
        for name, shape in table:
            size = math.prod(shape)
            P[name] = flat[o:o + size].to(torch.float64).view(shape).clone().requires_grad_(grad)
            o += size
        return P

    Pp = tensors(policy_flat, True)
    Pr = tensors(ref_flat, False)
    with torch.no_grad():
        ref = seq_logprobs(Pr, inputs, targets, mask, L, NH, C)
    pol = seq_logprobs(Pp, inputs, targets, mask, L, NH, C)
    d = (pol[0::2] - ref[0::2]) - (pol[1::2] - ref[1::2])
    loss = -F.logsigmoid(beta * d).mean()
    loss.backward()
    grads = torch.cat([Pp[name].grad.reshape(-1) for name, _ in table]).to(torch.float32)

    with open(out_path, "wb") as f:
        f.write(b"DPOFIX01" + data[8:rows_end])
        f.write(struct.pack(f"<{R}d", *pol.detach().tolist()))
        f.write(struct.pack(f"<{R}d", *ref.tolist()))
        f.write(struct.pack("<d", loss.item()))
        f.write(grads.numpy().astype("<f4").tobytes())
    print(f"make_dpo_fixture: wrote {out_path}: loss {loss.item():.6f}, margins {[round(x, 5) for x in d.tolist()]}, "
          f"torch {torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
