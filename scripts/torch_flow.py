"""PyTorch twins of kiln-flow's Glow and RealNVP (crates/flow), with
parameters under kiln's names, for the bits/dim fixture
(scripts/torch_flow_fixture.py) and the step benches (scripts/bench_torch.py).
Semantics follow crates/flow/src: squeeze as openai/glow's squeeze2d,
actnorm y = (x + b) exp(logs), the LU 1x1 conv W = P L (U + diag(sign exp(log_s))),
affine couplings y_b = x_b exp(s) + t with t first in the net's output,
splits that keep the first half of the channels."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LN_2PI = math.log(2 * math.pi)


def squeeze(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


class ActNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return (x + self.bias) * self.logs.exp(), self.logs.sum() * x.shape[2] * x.shape[3]


class InvConv(nn.Module):
    def __init__(self, c):
        super().__init__()
        w = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        dt = torch.get_default_dtype()
        self.register_buffer("perm", p.to(dt))
        self.register_buffer("sign", s.sign().to(dt))
        self.lower = nn.Parameter(torch.tril(lower, -1).to(dt))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dt))
        self.log_s = nn.Parameter(s.abs().log().to(dt))
        self.register_buffer("lmask", torch.tril(torch.ones(c, c), -1), persistent=False)
        self.register_buffer("eye", torch.eye(c), persistent=False)

    def forward(self, x):
        c = x.shape[1]
        lo = self.lower * self.lmask + self.eye
        up = self.upper * self.lmask.T + torch.diag(self.sign * self.log_s.exp())
        w = self.perm @ lo @ up
        return F.conv2d(x, w.view(c, c, 1, 1)), self.log_s.sum() * x.shape[2] * x.shape[3]


class Conv(nn.Conv2d):
    def __init__(self, cin, cout, k):
        super().__init__(cin, cout, k, padding=k // 2)


class GlowNet(nn.Module):
    def __init__(self, cin, hidden, cout):
        super().__init__()
        setattr(self, "in", Conv(cin, hidden, 3))
        self.mid, self.out = Conv(hidden, hidden, 1), Conv(hidden, cout, 3)

    def forward(self, x):
        return self.out(F.relu(self.mid(F.relu(getattr(self, "in")(x)))))


class Block(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.conv1, self.conv2 = Conv(hidden, hidden, 3), Conv(hidden, hidden, 3)

    def forward(self, h):
        return h + self.conv2(F.relu(self.conv1(F.relu(h))))


class ResNet(nn.Module):
    def __init__(self, cin, hidden, blocks, cout):
        super().__init__()
        setattr(self, "in", Conv(cin, hidden, 3))
        for b in range(blocks):
            setattr(self, f"block{b}", Block(hidden))
        self.blocks, self.out = blocks, Conv(hidden, cout, 3)

    def forward(self, x):
        h = getattr(self, "in")(x)
        for b in range(self.blocks):
            h = getattr(self, f"block{b}")(h)
        return self.out(F.relu(h))


class Coupling(nn.Module):
    """mask: ("channel", flip) or ("checker", parity); tanh: a learned scale per channel, else sigmoid(h + 2)."""

    def __init__(self, mask, net, out, size, tanh):
        super().__init__()
        self.mask, self.net = mask, net
        if tanh:
            self.scale = nn.Parameter(torch.ones(1, out, 1, 1))
        self.tanh = tanh
        if mask[0] == "checker":
            i = torch.arange(size)
            self.register_buffer("pattern", (((i[:, None] + i[None, :]) % 2) == mask[1]).to(torch.get_default_dtype()),
                                 persistent=False)

    def st(self, cond, out):
        h = self.net(cond)
        t, raw = h[:, :out], h[:, out:]
        s = self.scale * torch.tanh(raw) if self.tanh else F.logsigmoid(raw + 2)
        return s, t

    def forward(self, x):
        c = x.shape[1]
        if self.mask[0] == "checker":
            s, t = self.st(x * self.pattern, c)
            s, t = s * (1 - self.pattern), t * (1 - self.pattern)
            return x * s.exp() + t, s.sum((1, 2, 3))
        a = c // 2
        if not self.mask[1]:
            xa, xb = x[:, :a], x[:, a:]
        else:
            xa, xb = x[:, c - a:], x[:, :c - a]
        s, t = self.st(xa, c - a)
        yb = xb * s.exp() + t
        y = torch.cat([xa, yb], 1) if not self.mask[1] else torch.cat([yb, xa], 1)
        return y, s.sum((1, 2, 3))


def log_normal(z, mean=None, logs=None):
    if mean is None:
        return (-0.5 * z ** 2 - 0.5 * LN_2PI).sum((1, 2, 3))
    return (-0.5 * ((z - mean) * (-logs).exp()) ** 2 - logs - 0.5 * LN_2PI).sum((1, 2, 3))


class Flow(nn.Module):
    """nodes: ("squeeze",), ("layer", name), ("split", channels, prior conv name or None); top learned or N(0, I)."""

    def __init__(self):
        super().__init__()
        self.nodes, self.learned_top, self.logit_alpha = [], False, None

    def forward(self, x):
        """log p(x) in nats per image of x in [0, 1)^D, and (log-det, log-prior)."""
        n = x.shape[0]
        logdet = torch.zeros(n, dtype=x.dtype)
        if self.logit_alpha is not None:
            a = self.logit_alpha
            p = a + (1 - 2 * a) * x
            logdet = logdet + (math.log(1 - 2 * a) - p.log() - (1 - p).log()).sum((1, 2, 3))
            h = p.log() - (1 - p).log()
        else:
            h = x - 0.5
        logprior = torch.zeros(n, dtype=x.dtype)
        for node in self.nodes:
            if node[0] == "squeeze":
                h = squeeze(h)
            elif node[0] == "layer":
                h, ld = self.get_submodule(node[1])(h)
                logdet = logdet + ld
            else:
                keep = h.shape[1] - node[1]
                z1, z2 = h[:, :keep], h[:, keep:]
                if node[2] is None:
                    logprior = logprior + log_normal(z2)
                else:
                    ms = self.get_submodule(node[2])(z1)
                    k = ms.shape[1] // 2
                    logprior = logprior + log_normal(z2, ms[:, :k], ms[:, k:])
                h = z1
        if self.learned_top:
            logprior = logprior + log_normal(h, self.top.mean, self.top.logs)
        else:
            logprior = logprior + log_normal(h)
        return logprior + logdet, logdet, logprior


def add(flow, name, module):
    """Registers `module` under kiln's dotted name."""
    parts = name.split(".")
    parent = flow
    for p in parts[:-1]:
        if not hasattr(parent, p):
            parent.add_module(p, nn.Module())
        parent = getattr(parent, p)
    parent.add_module(parts[-1], module)


def glow(levels=2, depth=16, hidden=128, channels=1, size=28):
    f = Flow()
    ch, s = channels, size
    for lv in range(levels):
        f.nodes.append(("squeeze",))
        ch, s = ch * 4, s // 2
        for k in range(depth):
            q = f"level{lv}.step{k}"
            a, b = ch // 2, ch - ch // 2
            add(f, q + ".actnorm", ActNorm(ch))
            add(f, q + ".invconv", InvConv(ch))
            add(f, q + ".coupling_layer", Coupling(("channel", False), GlowNet(a, hidden, 2 * b), b, s, False))
            for n in ("actnorm", "invconv", "coupling_layer"):
                f.nodes.append(("layer", f"{q}.{n}"))
        if lv + 1 < levels:
            keep, out = ch // 2, ch - ch // 2
            add(f, f"level{lv}.prior", Conv(keep, 2 * out, 3))
            f.nodes.append(("split", out, f"level{lv}.prior"))
            ch = keep
    f.top = nn.Module()
    f.top.mean = nn.Parameter(torch.zeros(1, ch, 1, 1))
    f.top.logs = nn.Parameter(torch.zeros(1, ch, 1, 1))
    f.learned_top = True
    return f


def realnvp(hidden=32, blocks=2, channels=1, size=28, alpha=0.05):
    f = Flow()
    f.logit_alpha = alpha

    def coupling(k, mask, ch, s):
        cin, out = (ch, ch) if mask[0] == "checker" else (ch // 2, ch - ch // 2)
        add(f, f"coupling{k}", Coupling(mask, ResNet(cin, hidden, blocks, 2 * out), out, s, True))
        f.nodes.append(("layer", f"coupling{k}"))

    for k in range(3):
        coupling(k, ("checker", k % 2), channels, size)
    f.nodes.append(("squeeze",))
    for k in range(3, 6):
        coupling(k, ("channel", k % 2 == 0), 4 * channels, size // 2)
    keep = 2 * channels
    f.nodes.append(("split", 4 * channels - keep, None))
    for k in range(6, 10):
        coupling(k, ("checker", k % 2), keep, size // 2)
    return f


def kiln_name(torch_name):
    """The Glow twin nests each step's coupling net as `coupling_layer.net.`; kiln names it `coupling.`."""
    return torch_name.replace("coupling_layer.net.", "coupling.").replace("coupling_layer.", "coupling.")
