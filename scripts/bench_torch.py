#!/usr/bin/env python3
"""Times PyTorch (CPU, float32) on the shapes of kiln's criterion benches,
so `cargo xtask bench` can put both in one table measured in one run.

    python3 scripts/bench_torch.py > torch.json
    python3 scripts/bench_torch.py --dcgan-step SIZE STEPS   # one size only

Prints one JSON object {"<group>/<shape>": seconds}, where the keys match
the criterion ids `<group>/cpu/<variant>/<shape>` without backend/variant.
Op times use criterion's estimator, as kiln's side does: after a 0.5 s
warm-up, 10 samples of d, 2d, ..., 10d calls filling about 3 s, and the
best sample's time per call (noise on a shared machine only adds time).
The best single call would be 2-10% lower on ops under a few ms, which
compared against kiln's sample means was a bias against kiln. DCGAN steps
are the best of single steps on both sides.
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(0)


def timeit(fn, min_time=1.0, min_reps=5):
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def sampled(fn, warm_up=0.5, measurement=3.0, samples=10):
    """Criterion's linear sampling (kiln's benches/common config): sample i
    runs i·d calls, d set from the warm-up so the samples fill about
    `measurement` seconds; returns the smallest time per call of a sample."""
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < warm_up:
        fn()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    d = max(1, int(measurement / per_call / (samples * (samples + 1) / 2)))
    best = float("inf")
    for i in range(1, samples + 1):
        t = time.perf_counter()
        for _ in range(i * d):
            fn()
        best = min(best, (time.perf_counter() - t) / (i * d))
    return best


def fwd_and_fwd_bwd(out, key, f, inputs, gy_shape):
    with torch.no_grad():
        out[f"{key[0]}_fwd/{key[1]}"] = sampled(lambda: f(*inputs))
    leaves = [x.detach().requires_grad_(True) for x in inputs]
    gy = torch.randn(gy_shape)

    def step():
        for x in leaves:
            x.grad = None
        f(*leaves).backward(gy)

    out[f"{key[0]}_fwd_bwd/{key[1]}"] = sampled(step)


def main():
    out = {}
    for n, cin, h, cout, k, s, p in [(64, 1, 64, 64, 4, 2, 1), (64, 64, 32, 128, 4, 2, 1), (64, 128, 16, 256, 4, 2, 1),
                                     (64, 256, 8, 512, 4, 2, 1), (32, 64, 32, 64, 3, 1, 1),
                                     (32, 128, 16, 128, 3, 1, 1)]:
        x, w = torch.randn(n, cin, h, h), torch.randn(cout, cin, k, k) * 0.05
        oh = (h + 2 * p - k) // s + 1
        fwd_and_fwd_bwd(out, ("conv2d", f"n{n}_c{cin}_h{h}_o{cout}_k{k}s{s}p{p}"),
                        lambda x, w: F.conv2d(x, w, stride=s, padding=p), (x, w), (n, cout, oh, oh))
    for n, cin, h, cout in [(64, 512, 4, 256), (64, 256, 8, 128), (64, 128, 16, 64), (64, 64, 32, 1)]:
        x, w = torch.randn(n, cin, h, h), torch.randn(cin, cout, 4, 4) * 0.05
        fwd_and_fwd_bwd(out, ("conv_transpose2d", f"n{n}_c{cin}_h{h}_o{cout}_k4s2p1"),
                        lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), (x, w), (n, cout, 2 * h, 2 * h))
    for c, h in [(128, 16), (512, 4)]:
        x, w, b = torch.randn(64, c, h, h), torch.randn(c), torch.randn(c)
        fwd_and_fwd_bwd(out, ("batch_norm", f"n64_c{c}_h{h}"),
                        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (x, w, b), x.shape)
    for c, h in [(16, 28), (32, 14)]:
        x, w, b = torch.randn(64, c, h, h), torch.randn(c), torch.randn(c)
        fwd_and_fwd_bwd(out, ("group_norm", f"n64_c{c}_h{h}_g8"),
                        lambda x, w, b: F.group_norm(x, 8, w, b), (x, w, b), x.shape)
    for d in (64, 32):
        q, k, v = (torch.randn(8, 4, 256, d) for _ in range(3))
        fwd_and_fwd_bwd(out, ("attention", f"b8_h4_l256_d{d}"), F.scaled_dot_product_attention, (q, k, v), q.shape)
    for m, k, n in [(1024, 1024, 1024), (128, 1024, 256), (64, 4096, 1024)]:
        a, b = torch.randn(m, k), torch.randn(k, n)
        with torch.no_grad():
            out[f"matmul_fwd/m{m}_k{k}_n{n}"] = sampled(lambda: a @ b)
    out.update(dcgan_steps())
    out.update(gan_critic_step())
    out.update(vae_step())
    out.update(unet_step())
    out.update(flow_steps())
    print(json.dumps(out))


def vae_step():
    """kiln's default VAE (crates/vae): one training step at batch 128 on
    28×28 (dynamic binarization, ELBO with Bernoulli logits, Adam 1e-3), and
    the IWAE pass: log weights of 8 draws for 500 digits, no grad."""
    import torch.nn as nn
    latent, w, hidden = 16, 32, 256
    enc = nn.Sequential(nn.Conv2d(1, w, 4, 2, 1), nn.ReLU(), nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * w * 49, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
    dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 2 * w * 49), nn.ReLU(),
                        nn.Unflatten(1, (2 * w, 7, 7)), nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.ReLU(),
                        nn.ConvTranspose2d(w, 1, 4, 2, 1))
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)
    x = torch.tanh(torch.randn(128, 1, 28, 28))

    def step():
        t = (torch.rand_like(x) < (x + 1) / 2).float()
        mu, logvar = enc(2 * t - 1).chunk(2, 1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        ll = -F.binary_cross_entropy_with_logits(dec(z), t, reduction="none").sum((1, 2, 3))
        kl = 0.5 * (logvar.exp() + mu ** 2 - 1 - logvar).sum(1)
        loss = (kl - ll).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    held = (torch.rand(500, 1, 28, 28) < 0.5).float()

    def iwae_pass(k=8):
        with torch.no_grad():
            mu, logvar = enc(2 * held - 1).chunk(2, 1)
            eps = torch.randn(500, k, latent)
            z = (mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps).reshape(-1, latent)
            t = held.unsqueeze(1).expand(500, k, 1, 28, 28).reshape(-1, 1, 28, 28)
            ll = -F.binary_cross_entropy_with_logits(dec(z), t, reduction="none").sum((1, 2, 3)).reshape(500, k)
            log_p = (-0.5 * z ** 2 - 0.9189385332046727).sum(1).reshape(500, k)
            log_q = (-0.5 * eps ** 2 - 0.9189385332046727 - 0.5 * logvar.unsqueeze(1)).sum(2)
            return (ll + log_p - log_q).sum().item()

    return {"vae_step/n128_s28": sampled(step), "vae_step/n500_k8": sampled(iwae_pass)}


def unet_step():
    """kiln's default DDPM (crates/diffusion; scripts/torch_unet.py): one
    training step at batch 64 on 28×28 (ε-prediction MSE, clipping to 1,
    Adam 5e-4, EMA 0.999), and one no-grad U-Net forward at batch 256."""
    import copy
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_unet import UNet
    net = UNet()
    ema = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=5e-4)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0).float()
    x = torch.tanh(torch.randn(64, 1, 28, 28))

    def step():
        t = torch.randint(0, 1000, (64,))
        eps = torch.randn_like(x)
        a = abar[t].view(-1, 1, 1, 1)
        loss = ((net(a.sqrt() * x + (1 - a).sqrt() * eps, t) - eps) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for p, q in zip(net.parameters(), ema.parameters()):
                q.lerp_(p, 1 - 0.999)
        return loss.item()

    xs, ts = torch.randn(256, 1, 28, 28), torch.full((256,), 500)
    net.eval()

    def forward():
        with torch.no_grad():
            return net(xs, ts).sum().item()

    fwd = sampled(forward)
    net.train()
    return {"unet_step/n64_s28": sampled(step), "unet_step/n256_s28": fwd}


def flow_steps():
    """kiln's default Glow and RealNVP (crates/flow; scripts/torch_flow.py):
    one training step at batch 64 on 28×28 (uniform dequantisation, mean
    bits/dim, Adam 1e-3), and 64 samples at T = 0.7."""
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_flow
    k = torch.round(torch.tanh(torch.randn(64, 1, 28, 28)) * 127.5 + 127.5)
    out = {}
    for name, flow in [("glow_step", torch_flow.glow(levels=2, depth=24, hidden=16)),
                       ("realnvp_step", torch_flow.realnvp(hidden=32, blocks=2))]:
        opt = torch.optim.Adam(flow.parameters(), lr=1e-3)

        def step():
            x = (k + torch.rand_like(k)) / 256
            bpd = (-flow(x)[0] / (784 * math.log(2)) + 8).mean()
            opt.zero_grad()
            bpd.backward()
            opt.step()
            return bpd.item()

        out[f"{name}/n64_s28"] = sampled(step)
    return out


def dcgan_nets(size, d_norm="batch"):
    """pytorch/examples' DCGAN generator and discriminator (logits) at `size`;
    d_norm "layer" puts LayerNorm([C, H, W]) in D (WGAN-GP: no batch norm)."""
    import torch.nn as nn
    stages = size.bit_length() - 3
    nz, ngf, ndf = 100, 64, 64
    g_layers, mult = [nn.ConvTranspose2d(nz, ngf * 2 ** (stages - 1), 4, 1, 0, bias=False)], 2 ** (stages - 1)
    g_layers += [nn.BatchNorm2d(ngf * mult), nn.ReLU(True)]
    while mult > 1:
        g_layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                     nn.BatchNorm2d(ngf * mult // 2), nn.ReLU(True)]
        mult //= 2
    g = nn.Sequential(*g_layers, nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh())
    d_layers, mult, side = [nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)], 1, size // 2
    for _ in range(1, stages):
        side //= 2
        ch = ndf * mult * 2
        norm = nn.LayerNorm([ch, side, side]) if d_norm == "layer" else nn.BatchNorm2d(ch)
        d_layers += [nn.Conv2d(ndf * mult, ch, 4, 2, 1, bias=False), norm, nn.LeakyReLU(0.2, True)]
        mult *= 2
    d = nn.Sequential(*d_layers, nn.Conv2d(ndf * mult, 1, 4, 1, 0, bias=False))
    return g, d


def gan_critic_step():
    """One WGAN-GP critic step at 32×32, batch 64 (benches/gan_critic_step.rs):
    G under no_grad, D on real and fake, the penalty through
    torch.autograd.grad(create_graph=True), Adam(1e-4, (0, 0.9))."""
    g, d = dcgan_nets(32, d_norm="layer")
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.0, 0.9))
    real = torch.tanh(torch.randn(64, 1, 32, 32))

    def step():
        with torch.no_grad():
            fake = g(torch.randn(64, 100, 1, 1))
        alpha = torch.rand(64, 1, 1, 1)
        x_hat = (real + alpha * (fake - real)).requires_grad_(True)
        (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
        gp = 10.0 * ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()
        loss = d(fake).mean() - d(real).mean() + gp
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
        return loss.item()

    return {"gan_critic_step/n64_s32": sampled(step)}


def dcgan_steps(sizes=(64, 32), min_time=3.0, min_reps=3):
    """One pytorch/examples DCGAN step (D real + fake, G; Adam; BCE) per size."""
    import torch.nn as nn
    res = {}
    for size in sizes:
        g, d = dcgan_nets(size)
        nz = 100
        opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        loss = nn.BCEWithLogitsLoss()
        real = torch.tanh(torch.randn(64, 1, size, size))
        ones, zeros = torch.ones(64), torch.zeros(64)

        def step():
            d.zero_grad()
            err_real = loss(d(real).view(-1), ones)
            fake = g(torch.randn(64, nz, 1, 1))
            err_fake = loss(d(fake.detach()).view(-1), zeros)
            (err_real + err_fake).backward()
            opt_d.step()
            g.zero_grad()
            loss(d(fake).view(-1), ones).backward()
            opt_g.step()

        res[f"dcgan_step/n64_s{size}"] = timeit(step, min_time=min_time, min_reps=min_reps)
    return res


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--dcgan-step":
        # Best of STEPS steps after one warm-up: the PyTorch half of xtask's
        # interleaved kiln / PyTorch rounds.
        print(json.dumps(dcgan_steps((int(sys.argv[2]),), min_time=0.0, min_reps=int(sys.argv[3]))))
    else:
        main()
