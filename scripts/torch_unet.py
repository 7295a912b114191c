"""kiln's DDPM U-Net (crates/diffusion/src/unet.rs) in PyTorch, layer for
layer with the same parameter names, for the step bench and the fixture.
Not a port of kiln's code: the architecture as the DDPM paper and
improved-diffusion lay it out, with kiln's choices (single-head attention,
GroupNorm eps 1e-5, zero-initialised last convs)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    args = t.double()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def zero(m):
    nn.init.zeros_(m.weight)
    nn.init.zeros_(m.bias)
    return m


class Res(nn.Module):
    def __init__(self, cin, cout, emb, groups, dropout):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, e):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) if self.skip is not None else x) + h


class Attn(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = zero(nn.Conv2d(c, c, 1))

    def forward(self, x, e=None):
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3 * c, h * w)
        q, k, v = (qkv[:, i * c:(i + 1) * c].transpose(1, 2) for i in range(3))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, c, h, w)
        return x + self.proj(a)


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.upsample = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, e=None):
        return self.upsample(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    def __init__(self, channels=1, image_size=28, base=16, mults=(1, 2, 2), res_blocks=2, attention=(7,),
                 groups=8, dropout=0.1, classes=0):
        super().__init__()
        e = 4 * base
        self.base = base
        self.time = nn.Sequential(nn.Linear(base, e), nn.SiLU(), nn.Linear(e, e))
        self.label = nn.Embedding(classes + 1, e) if classes else None
        self.input = nn.Conv2d(channels, base, 3, padding=1)
        self.down = nn.ModuleList()
        ch, kept, res = base, [base], image_size
        for level, m in enumerate(mults):
            for _ in range(res_blocks):
                entry = [Res(ch, m * base, e, groups, dropout)]
                ch = m * base
                if res in attention:
                    entry.append(Attn(ch, groups))
                self.down.append(nn.ModuleList(entry))
                kept.append(ch)
            if level != len(mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                kept.append(ch)
                res //= 2
        self.mid = nn.ModuleList([Res(ch, ch, e, groups, dropout), Attn(ch, groups), Res(ch, ch, e, groups, dropout)])
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mults))):
            for i in range(res_blocks + 1):
                entry = [Res(ch + kept.pop(), m * base, e, groups, dropout)]
                ch = m * base
                if res in attention:
                    entry.append(Attn(ch, groups))
                if level != 0 and i == res_blocks:
                    entry.append(Up(ch))
                    res *= 2
                self.up.append(nn.ModuleList(entry))
        self.out_norm = nn.GroupNorm(groups, base)
        self.out_conv = zero(nn.Conv2d(base, channels, 3, padding=1))

    @staticmethod
    def run(block, h, e):
        if isinstance(block, Res):
            return block(h, e)
        if isinstance(block, (Attn, Up)):
            return block(h)
        return block(h)  # the strided down-sampling conv

    def forward(self, x, t, y=None):
        emb = self.time(timestep_embedding(t, self.base).to(x.dtype))
        if self.label is not None:
            emb = emb + self.label(y)
        e = F.silu(emb)
        h = self.input(x)
        kept = [h]
        for entry in self.down:
            for b in entry:
                h = self.run(b, h, e)
            kept.append(h)
        for b in self.mid:
            h = self.run(b, h, e)
        for entry in self.up:
            h = torch.cat([h, kept.pop()], 1)
            for b in entry:
                h = self.run(b, h, e)
        return self.out_conv(F.silu(self.out_norm(h)))
