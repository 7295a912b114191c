#!/usr/bin/env python3
"""PyTorch references for kiln-diffusion (tests/diffusion.rs), written to
tests/fixtures/torch/diffusion.json. Needs torch.

    python3 scripts/torch_diffusion_fixture.py

- schedules: the linear (Ho et al.) and cosine (Nichol & Dhariwal) betas
  as improved-diffusion builds them, ᾱ, and the posterior's variance and
  mean coefficients, at T = 1000, in float64;
- unet: a small conditional U-Net (scripts/torch_unet.py) with every
  parameter drawn at random (the zero-initialised convs would hide most
  of the network), its parameters under kiln's names, an input, timesteps,
  labels, and the output in float64.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import enc  # noqa: E402
from torch_unet import UNet  # noqa: E402

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "torch", "diffusion.json")


def schedule(kind, T=1000):
    if kind == "linear":
        scale = 1000 / T
        betas = torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
    else:
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)])
    abar = torch.cumprod(1 - betas, 0)
    prev = torch.cat([torch.ones(1), abar[:-1]])
    return {
        "betas": enc(betas),
        "alphas_cumprod": enc(abar),
        "posterior_variance": enc(betas * (1 - prev) / (1 - abar)),
        "posterior_mean_coef1": enc(betas * prev.sqrt() / (1 - abar)),
        "posterior_mean_coef2": enc((1 - prev) * (1 - betas).sqrt() / (1 - abar)),
    }


def kiln_names(net, mults, res_blocks):
    """torch parameter name -> kiln's (crates/diffusion/src/unet.rs)."""
    names = {}
    k = 0
    for level in range(len(mults)):
        for i in range(res_blocks):
            for j, kind in enumerate(["res", "attn"][: len(net.down[k])]):
                names[f"down.{k}.{j}."] = f"down.{level}.{i}.{kind}."
            k += 1
        if level != len(mults) - 1:
            names[f"down.{k}.0."] = f"down.{level}.downsample."
            k += 1
    names.update({"mid.0.": "mid.res1.", "mid.1.": "mid.attn.", "mid.2.": "mid.res2."})
    k = 0
    for level in reversed(range(len(mults))):
        for i in range(res_blocks + 1):
            for j, b in enumerate(net.up[k]):
                kind = type(b).__name__.lower()
                names[f"up.{k}.{j}."] = f"up.{level}.{i}." + {"res": "res.", "attn": "attn.", "up": ""}[kind]
            k += 1
    names.update({"time.0.": "time.0.", "time.2.": "time.1.", "out_norm.": "out.norm.", "out_conv.": "out.conv."})
    out = {}
    for name, p in net.named_parameters():
        prefix = max((t for t in names if name.startswith(t)), key=len, default=None)
        out[names[prefix] + name[len(prefix):] if prefix else name] = p
    return out


def unet_case():
    torch.manual_seed(7)
    cfg = dict(channels=1, image_size=8, base=8, mults=(1, 2), res_blocks=1, attention=(4,), groups=4,
               dropout=0.0, classes=10)
    net = UNet(**cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape) * 0.3)
    net.eval()
    x = torch.randn(3, 1, 8, 8)
    t = torch.tensor([0.0, 417.0, 999.0])
    y = torch.tensor([3, 10, 7])
    out = net(x, t, y)
    params = {k: enc(v) for k, v in kiln_names(net, cfg["mults"], cfg["res_blocks"]).items()}
    return {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
            "params": params, "x": enc(x), "t": t.tolist(), "labels": y.tolist(), "out": enc(out)}


def main():
    doc = {"torch_version": torch.__version__, "linear": schedule("linear"), "cosine": schedule("cosine"),
           "unet": unet_case()}
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
