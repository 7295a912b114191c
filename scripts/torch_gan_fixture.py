#!/usr/bin/env python3
"""PyTorch references for kiln-gan's spectral normalisation and gradient
penalty, written to tests/fixtures/torch/gan.json in the format of
scripts/torch_fixtures.py. Needs torch.

    python3 scripts/torch_gan_fixture.py

- torch.nn.utils.spectral_norm on a Conv2d, a ConvTranspose2d (dim 1) and
  a Linear with fixed weight_orig, weight_u and weight_v: one power
  iteration in training mode (the updated u and v are outputs), none in
  eval mode; the layer's output and the gradients of sum(y * gy) with
  respect to weight_orig and the input.
- A gradient penalty written with torch.autograd.grad(create_graph=True)
  through a spectral-normed critic: its value and its gradient with respect
  to the critic's weight_orig (the second backward through the layer).
- WGAN-GP's penalty λ·mean((‖∇D(x̂)‖₂ − 1)²) on interpolates
  x̂ = x + α(x̃ − x), one α per image and the norm over all non-batch dims,
  for the 16×16 DCGAN critic with LayerNorm (kiln's wgan-gp default), with
  its value and the gradients with respect to every critic weight.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_fixtures import Group, pos, rn  # noqa: E402

torch.set_default_dtype(torch.float64)


def unit(n):
    u = rn(n)
    return u / u.norm()


def spectral(g):
    def case(name, kind, module, x, train):
        h = module.weight.shape[1 if kind == "conv_transpose2d" else 0]
        w = module.weight.numel() // h
        ins = {"weight_orig": module.weight.detach().clone(), "u": unit(h), "v": unit(w), "x": x}
        if getattr(module, "bias", None) is not None:
            ins["bias"] = module.bias.detach().clone()
        params = {"kind": kind, "train": train}
        if kind == "conv2d":
            params.update(stride=list(module.stride), padding=list(module.padding))
        if kind == "conv_transpose2d":
            params.update(stride=list(module.stride), padding=list(module.padding))

        def f(weight_orig, u, v, x, bias=None):
            m = nn.utils.spectral_norm(module)
            with torch.no_grad():
                m.weight_u.copy_(u)
                m.weight_v.copy_(v)
            del m.weight_orig
            m.weight_orig = weight_orig
            m.train(train)
            y = m(x)
            outs = {"y": y, "weight": m.weight, "u_next": m.weight_u.clone(), "v_next": m.weight_v.clone()}
            nn.utils.remove_spectral_norm(m)
            return outs

        g.add(name, "spectral_norm", params, ins, f, grad=("weight_orig", "x"))

    for train in (True, False):
        tag = "train" if train else "eval"
        case(f"sn_conv2d_{tag}", "conv2d", nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True), rn(2, 3, 5, 5), train)
        case(f"sn_conv_transpose2d_{tag}", "conv_transpose2d", nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1, bias=False),
             rn(2, 4, 3, 3), train)
        case(f"sn_linear_{tag}", "linear", nn.Linear(6, 5, bias=True), rn(3, 6), train)

    def sn_penalty(weight_orig, u, v, x):
        conv = nn.utils.spectral_norm(nn.Conv2d(2, 3, 3, padding=1, bias=False))
        with torch.no_grad():
            conv.weight_u.copy_(u)
            conv.weight_v.copy_(v)
        del conv.weight_orig
        conv.weight_orig = weight_orig
        x = x.detach().requires_grad_(True)
        out = F.leaky_relu(conv(x), 0.2).sum()
        (gx,) = torch.autograd.grad(out, x, create_graph=True)
        pen = ((gx.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()
        return {"y": pen, "u_next": conv.weight_u.clone()}

    g.add("sn_gradient_penalty_double_backward", "sn_gradient_penalty", {},
          {"weight_orig": rn(3, 2, 3, 3) * 0.5, "u": unit(3), "v": unit(18), "x": rn(2, 2, 4, 4)}, sn_penalty,
          grad=("weight_orig",))


def wgan_gp(g):
    ndf, nc = 4, 1
    critic = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.LayerNorm([ndf * 2, 4, 4]), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False))
    with torch.no_grad():
        for m in critic:
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, 0.2)
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(pos(*m.weight.shape))
                m.bias.copy_(rn(*m.bias.shape) * 0.1)
    ps = {f"main.{k}": v.detach().clone() for k, v in critic.named_parameters()}
    n = 3
    ins = {**ps, "real": torch.rand(n, nc, 16, 16) * 2 - 1, "fake": torch.rand(n, nc, 16, 16) * 2 - 1,
           "alpha": torch.rand(n, 1, 1, 1)}

    def f(real, fake, alpha, **weights):
        state = {k[5:]: v for k, v in weights.items()}
        x_hat = (real + alpha * (fake - real)).detach().requires_grad_(True)
        out = torch.func.functional_call(critic, state, (x_hat,))
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
        return {"y": 10.0 * ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()}

    # LayerNorm's bias shifts D by a constant: ∇ₓD, hence the penalty, does
    # not depend on it (torch gives a zero gradient, kiln none): not compared.
    leaves = {k: v.clone().requires_grad_(True) for k, v in ps.items()}
    f(ins["real"], ins["fake"], ins["alpha"], **leaves)["y"].backward()
    assert leaves["main.3.bias"].grad.abs().max() == 0.0
    g.add("wgan_gp_penalty_dcgan16_layer_norm", "wgan_gp_penalty", {"ndf": ndf, "image_size": 16, "lambda": 10.0},
          ins, f, grad=tuple(k for k in ps if k != "main.3.bias"))


if __name__ == "__main__":
    g = Group("gan", 12)
    spectral(g)
    wgan_gp(g)
    g.write()
