#!/usr/bin/env python3
"""PyTorch references for kiln-flow (tests/flow.rs), written to
tests/fixtures/torch/flow.json. Needs torch.

    python3 scripts/torch_flow_fixture.py

For a tiny Glow (2 levels of 2 steps, 8 hidden channels) and a tiny
RealNVP (8 hidden channels, 1 residual block), both on 1×8×8, built by
scripts/torch_flow.py with every parameter moved off its initial value
(zero-initialised convs would hide the couplings and priors): the
parameters and buffers under kiln's names, a batch of dequantised images
x ∈ [0, 1), and per image log p(x), the log-det, the priors' log-density
and bits/dim = (−log p(x) + D ln 256) / (D ln 2), in float64.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_flow  # noqa: E402
from fixture_io import enc  # noqa: E402

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "torch", "flow.json")


def case(flow, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    k = torch.randint(0, 256, (3, 1, 8, 8), generator=g).double()
    x = (k + torch.rand(k.shape, generator=g)) / 256
    log_p, log_det, log_prior = flow(x)
    d = x[0].numel()
    bpd = (-log_p + d * math.log(256)) / (d * math.log(2))
    tensors = {torch_flow.kiln_name(n): enc(t) for n, t in flow.state_dict().items()}
    tensors["actnorm_initialized"] = enc(torch.ones(1))
    return {"tensors": tensors, "x": enc(x), "log_p": enc(log_p), "log_det": enc(log_det),
            "log_prior": enc(log_prior), "bpd": enc(bpd)}


def main():
    torch.manual_seed(0)
    doc = {
        "glow": case(torch_flow.glow(levels=2, depth=2, hidden=8, size=8), 1),
        "realnvp": case(torch_flow.realnvp(hidden=8, blocks=1, size=8), 2),
    }
    with open(OUT, "w") as f:
        json.dump(doc, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
