#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for kiln's Rust tests.

Every case runs one op in float64 on the CPU, records its inputs, outputs and
the gradients of sum(y * gy) with respect to its differentiable inputs, where
gy is a random tensor with y's shape stored as the input "gy".

Run from the repository root (needs torch and numpy installed):

    python3 scripts/torch_fixtures.py

It (re)writes tests/fixtures/torch/<group>.json, one file per group
(conv, norm, attention, elementwise, reduce, pool, loss, dcgan). Output is
deterministic: each group reseeds torch's generator before drawing inputs.
"""

import json
import os

import torch
import torch.nn.functional as F

from fixture_io import enc

torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

OUT_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "torch"))


def rn(*shape):
    return torch.randn(*shape)


def pos(*shape, lo=0.2):
    """Positive random values in roughly [lo, lo + 2]."""
    return torch.rand(*shape) * 2.0 + lo


class Group:
    def __init__(self, name, seed):
        self.name = name
        self.cases = []
        torch.manual_seed(seed)

    def add(self, name, op, params, inputs, fn, grad=(), out="y"):
        """fn(**inputs) -> dict of outputs; grads of sum(outs[out] * gy) w.r.t. `grad`."""
        if any(c["name"] == name for c in self.cases):
            raise ValueError(f"duplicate case name {name}")
        leaves = {k: v.detach().clone().requires_grad_(k in grad) for k, v in inputs.items()}
        outs = fn(**leaves)
        case = {"name": name, "op": op, "params": params, "inputs": {k: enc(v) for k, v in inputs.items()}}
        if grad:
            gy = torch.randn(outs[out].shape)
            (outs[out] * gy).sum().backward()
            case["inputs"]["gy"] = enc(gy)
        case["outputs"] = {k: enc(v.to(torch.float64)) for k, v in outs.items()}
        if grad:
            case["grads"] = {k: enc(leaves[k].grad) for k in grad}
        self.cases.append(case)

    def write(self):
        os.makedirs(OUT_DIR, exist_ok=True)
        path = os.path.join(OUT_DIR, self.name + ".json")
        lines = ",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in self.cases)
        with open(path, "w") as f:
            f.write('{"torch_version":%s,\n"cases":[\n%s\n]}\n' % (json.dumps(torch.__version__), lines))
        print(f"{path}: {len(self.cases)} cases, {os.path.getsize(path)} bytes")


# ---------------------------------------------------------------- conv

def conv_group():
    g = Group("conv", 1)

    def conv(name, n, cin, cout, h, w, k, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, bias=True):
        kh, kw = k
        ins = {"x": rn(n, cin, h, w), "w": rn(cout, cin // groups, kh, kw)}
        if bias:
            ins["b"] = rn(cout)
        p = {"stride": list(stride), "padding": list(padding), "dilation": list(dilation), "groups": groups, "bias": bias}
        f = lambda x, w, b=None: {"y": F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)}
        g.add(name, "conv2d", p, ins, f, grad=tuple(ins))

    conv("conv2d_3x3_plain", 2, 3, 4, 6, 6, (3, 3))
    conv("conv2d_k4_s2_p1_dcgan", 2, 3, 4, 6, 6, (4, 4), stride=(2, 2), padding=(1, 1))
    conv("conv2d_dilation2", 2, 2, 3, 7, 7, (3, 3), dilation=(2, 2), padding=(1, 1))
    conv("conv2d_groups2", 2, 4, 6, 5, 5, (3, 3), padding=(1, 1), groups=2)
    conv("conv2d_depthwise", 2, 4, 4, 5, 6, (3, 3), padding=(1, 1), groups=4)
    conv("conv2d_depthwise_multiplier2", 1, 3, 6, 5, 5, (3, 3), groups=3)
    conv("conv2d_asym_stride21_pad02", 2, 3, 2, 6, 5, (3, 2), stride=(2, 1), padding=(0, 2))
    conv("conv2d_1x1", 2, 5, 3, 4, 4, (1, 1))
    conv("conv2d_batch1", 1, 3, 2, 5, 5, (3, 3), padding=(1, 1))
    conv("conv2d_odd_stride2_uneven", 2, 3, 4, 7, 6, (3, 3), stride=(2, 2))
    conv("conv2d_odd_stride3_pad1", 1, 2, 3, 7, 7, (2, 3), stride=(3, 3), padding=(1, 1))
    conv("conv2d_no_bias", 2, 3, 4, 5, 5, (3, 3), stride=(2, 2), padding=(1, 1), bias=False)

    def convt(name, n, cin, cout, h, w, k, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1), groups=1, bias=True):
        kh, kw = k
        ins = {"x": rn(n, cin, h, w), "w": rn(cin, cout // groups, kh, kw)}
        if bias:
            ins["b"] = rn(cout)
        p = {"stride": list(stride), "padding": list(padding), "output_padding": list(output_padding),
             "dilation": list(dilation), "groups": groups, "bias": bias}
        f = lambda x, w, b=None: {"y": F.conv_transpose2d(x, w, b, stride=stride, padding=padding,
                                                          output_padding=output_padding, groups=groups, dilation=dilation)}
        g.add(name, "conv_transpose2d", p, ins, f, grad=tuple(ins))

    convt("convt_k4_s2_p1_dcgan", 2, 4, 3, 3, 3, (4, 4), stride=(2, 2), padding=(1, 1))
    convt("convt_k4_s1_p0_from_1x1", 2, 6, 4, 1, 1, (4, 4), bias=False)
    convt("convt_s2_outpad1", 2, 3, 2, 3, 4, (3, 3), stride=(2, 2), padding=(1, 1), output_padding=(1, 1))
    convt("convt_s3_dil2_outpad2", 1, 2, 3, 3, 3, (3, 3), stride=(3, 3), padding=(1, 1), output_padding=(2, 2), dilation=(2, 2))
    convt("convt_s1_dil2_outpad1", 1, 2, 2, 3, 3, (2, 2), output_padding=(1, 1), dilation=(2, 2))
    convt("convt_groups2", 2, 4, 6, 3, 3, (3, 3), stride=(2, 2), padding=(1, 1), groups=2)
    convt("convt_dilation2", 2, 3, 2, 4, 4, (3, 3), dilation=(2, 2), padding=(1, 1))
    convt("convt_asym", 2, 3, 2, 3, 4, (3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0))
    convt("convt_no_bias", 2, 3, 4, 3, 3, (3, 3), stride=(2, 2), bias=False)
    convt("convt_batch1", 1, 2, 3, 4, 3, (2, 2), stride=(2, 2))
    convt("convt_depthwise", 1, 3, 3, 3, 3, (3, 3), stride=(2, 2), groups=3)
    return g


# ---------------------------------------------------------------- norm

def norm_group():
    g = Group("norm", 2)

    def bn_seq(name, shape, momentum=0.1, eps=1e-5, affine=True, steps=3):
        c = shape[1]
        ins = {f"x{i}": rn(*shape) * 1.5 + 0.5 for i in range(steps)}
        if affine:
            ins["w"], ins["b"] = rn(c), rn(c)

        def f(w=None, b=None, **xs):
            rm, rv = torch.zeros(c), torch.ones(c)
            outs = {}
            for i in range(steps):
                x = xs[f"x{i}"] if i == steps - 1 else xs[f"x{i}"].detach()
                y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum, eps=eps)
                outs[f"y{i}"] = y if i == steps - 1 else y.detach()
                outs[f"running_mean_{i + 1}"] = rm.clone()
                outs[f"running_var_{i + 1}"] = rv.clone()
            return outs

        last = f"x{steps - 1}"
        p = {"momentum": momentum, "eps": eps, "affine": affine, "steps": steps}
        g.add(name, "batch_norm_train_sequence", p, ins, f, grad=(last, "w", "b") if affine else (last,), out=f"y{steps - 1}")

    bn_seq("bn_train_2d_affine", (2, 3, 4, 4))
    bn_seq("bn_train_momentum0.3", (2, 3, 3, 3), momentum=0.3)
    bn_seq("bn_train_n1_hw", (1, 2, 3, 4))
    bn_seq("bn_train_4ch_no_affine", (2, 4, 2, 3), affine=False)
    bn_seq("bn_train_1d_nc", (5, 3))

    def bn_eval(name, shape, eps=1e-5):
        c = shape[1]
        ins = {"x": rn(*shape), "running_mean": rn(c) * 0.5, "running_var": pos(c), "w": rn(c), "b": rn(c)}
        f = lambda x, running_mean, running_var, w, b: {"y": F.batch_norm(x, running_mean, running_var, w, b, training=False, eps=eps)}
        g.add(name, "batch_norm_eval", {"eps": eps}, ins, f, grad=("x", "w", "b"))

    bn_eval("bn_eval_4d", (2, 3, 3, 3))
    bn_eval("bn_eval_2d_eps1e-3", (4, 3), eps=1e-3)

    def ln(name, shape, ns, eps=1e-5, affine=True):
        ins = {"x": rn(*shape) * 2 + 1}
        if affine:
            ins["w"], ins["b"] = rn(*ns), rn(*ns)
        f = lambda x, w=None, b=None: {"y": F.layer_norm(x, ns, w, b, eps)}
        g.add(name, "layer_norm", {"normalized_shape": list(ns), "eps": eps, "affine": affine}, ins, f, grad=tuple(ins))

    ln("layer_norm_last_dim", (2, 3, 4), (4,))
    ln("layer_norm_last_two_dims", (2, 3, 4), (3, 4))
    ln("layer_norm_no_affine", (3, 5), (5,), affine=False)
    ln("layer_norm_eps1e-3_4d", (2, 2, 3, 3), (3,), eps=1e-3)

    def gn(name, shape, groups, eps=1e-5, affine=True):
        c = shape[1]
        ins = {"x": rn(*shape) * 2 + 1}
        if affine:
            ins["w"], ins["b"] = rn(c), rn(c)
        f = lambda x, w=None, b=None: {"y": F.group_norm(x, groups, w, b, eps)}
        g.add(name, "group_norm", {"groups": groups, "eps": eps, "affine": affine}, ins, f, grad=tuple(ins))

    gn("group_norm_g2_c4", (2, 4, 3, 3), 2)
    gn("group_norm_g1", (2, 3, 2, 3), 1)
    gn("group_norm_g_eq_c", (2, 4, 3, 2), 4)
    gn("group_norm_g3_c6_no_affine", (1, 6, 2, 2), 3, affine=False)
    return g


# ---------------------------------------------------------------- attention

def attention_group():
    g = Group("attention", 3)

    def sdpa(name, qs, ks, vs, causal=False, scale=None, mask=None):
        ins = {"q": rn(*qs), "k": rn(*ks), "v": rn(*vs)}
        if mask is not None:
            ins["mask"] = mask
        f = lambda q, k, v, mask=None: {"y": F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)}
        p = {"causal": causal, "scale": scale, "has_mask": mask is not None}
        g.add(name, "sdpa", p, ins, f, grad=tuple(ins))

    sdpa("sdpa_plain", (2, 2, 3, 4), (2, 2, 3, 4), (2, 2, 3, 4))
    sdpa("sdpa_causal_square", (2, 2, 4, 3), (2, 2, 4, 3), (2, 2, 4, 3), causal=True)
    sdpa("sdpa_causal_l3_s5", (1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4), causal=True)
    sdpa("sdpa_causal_l5_s3", (1, 2, 5, 4), (1, 2, 3, 4), (1, 2, 3, 4), causal=True)
    sdpa("sdpa_scale_0.7", (2, 1, 3, 4), (2, 1, 4, 4), (2, 1, 4, 4), scale=0.7)
    sdpa("sdpa_mask_ls", (2, 2, 3, 4), (2, 2, 4, 4), (2, 2, 4, 4), mask=rn(3, 4))
    sdpa("sdpa_mask_b1ls", (2, 2, 3, 4), (2, 2, 4, 4), (2, 2, 4, 4), mask=rn(2, 1, 3, 4))
    big = rn(3, 4)
    big[0, 1] = big[1, 3] = big[2, 0] = big[2, 2] = -1e9
    sdpa("sdpa_mask_large_negative", (1, 2, 3, 4), (1, 2, 4, 4), (1, 2, 4, 4), mask=big)
    sdpa("sdpa_3d_no_heads", (2, 3, 4), (2, 5, 4), (2, 5, 4))
    sdpa("sdpa_3d_causal", (2, 4, 3), (2, 4, 3), (2, 4, 3), causal=True)
    sdpa("sdpa_ev_ne_e", (1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 2))
    return g


# ---------------------------------------------------------------- elementwise

def elementwise_group():
    g = Group("elementwise", 4)

    def ew(name, op, params, x, f):
        g.add(name, op, params, {"x": x}, lambda x: {"y": f(x)}, grad=("x",))

    ew("gelu_none", "gelu", {"approximate": "none"}, rn(3, 4) * 2, lambda x: F.gelu(x))
    ew("gelu_tanh", "gelu", {"approximate": "tanh"}, rn(3, 4) * 2, lambda x: F.gelu(x, approximate="tanh"))
    ew("elu_alpha1", "elu", {"alpha": 1.0}, rn(3, 4) * 2, lambda x: F.elu(x, 1.0))
    ew("elu_alpha0.5", "elu", {"alpha": 0.5}, rn(3, 4) * 2, lambda x: F.elu(x, 0.5))
    ew("leaky_relu_0.01", "leaky_relu", {"negative_slope": 0.01}, rn(3, 4), lambda x: F.leaky_relu(x, 0.01))
    ew("leaky_relu_0.2", "leaky_relu", {"negative_slope": 0.2}, rn(3, 4), lambda x: F.leaky_relu(x, 0.2))
    ew("softplus_default", "softplus", {"beta": 1.0, "threshold": 20.0},
       torch.cat([rn(2, 4) * 3, torch.tensor([[21.0, 25.5, -30.0, 19.5]])]), lambda x: F.softplus(x, 1.0, 20.0))
    ew("softplus_beta2_thr5", "softplus", {"beta": 2.0, "threshold": 5.0}, rn(3, 4) * 3,
       lambda x: F.softplus(x, 2.0, 5.0))
    ew("silu", "silu", {}, rn(3, 4) * 2, F.silu)
    ew("sigmoid", "sigmoid", {}, rn(3, 4) * 2, torch.sigmoid)
    ew("tanh", "tanh", {}, rn(3, 4) * 2, torch.tanh)
    xc = rn(3, 4) * 1.5
    xc[(xc - 0.5).abs() < 1e-3] += 0.01
    xc[(xc + 1.0).abs() < 1e-3] += 0.01
    ew("clamp_m1_0.5", "clamp", {"min": -1.0, "max": 0.5}, xc, lambda x: torch.clamp(x, -1.0, 0.5))
    ew("powf_2.5", "powf", {"exponent": 2.5}, pos(3, 4), lambda x: x.pow(2.5))
    ew("powf_neg0.5", "powf", {"exponent": -0.5}, pos(3, 4), lambda x: x.pow(-0.5))
    ew("powf_3", "powf", {"exponent": 3.0}, pos(3, 4), lambda x: x.pow(3.0))
    ew("rsqrt", "rsqrt", {}, pos(3, 4), torch.rsqrt)
    ew("log_sigmoid", "log_sigmoid", {}, torch.cat([rn(2, 4) * 3, torch.tensor([[-40.0, 40.0, -15.0, 15.0]])]), F.logsigmoid)
    ew("erf", "erf", {}, rn(3, 4) * 1.5, torch.erf)
    return g


# ---------------------------------------------------------------- reduce

def reduce_group():
    g = Group("reduce", 5)

    def red(name, op, params, f, x=None):
        x = rn(2, 3, 4) if x is None else x
        g.add(name, op, params, {"x": x}, f, grad=("x",))

    for d in (0, 1, 2):
        red(f"softmax_dim{d}", "softmax", {"dim": d}, lambda x, d=d: {"y": F.softmax(x, d)})
    for d in (1, 2):
        red(f"log_softmax_dim{d}", "log_softmax", {"dim": d}, lambda x, d=d: {"y": F.log_softmax(x, d)})
    red("softmax_large_values", "softmax", {"dim": 2}, lambda x: {"y": F.softmax(x, 2)}, x=rn(2, 3, 4) * 50 + 500)
    for dims, kd in (([2], False), ([0, 2], True), ([0, 1, 2], False), ([1], True)):
        tag = "".join(map(str, dims)) + ("_keep" if kd else "")
        red(f"logsumexp_d{tag}", "logsumexp", {"dims": dims, "keepdim": kd}, lambda x, dims=dims, kd=kd: {"y": torch.logsumexp(x, dims, kd)})
        red(f"mean_d{tag}", "mean", {"dims": dims, "keepdim": kd}, lambda x, dims=dims, kd=kd: {"y": x.mean(dims, keepdim=kd)})
    for dims, ub, kd in (([2], True, False), ([2], False, True), ([0, 2], True, False), ([0, 1, 2], False, False), ([1], True, True)):
        tag = "".join(map(str, dims)) + ("_unbiased" if ub else "_biased") + ("_keep" if kd else "")
        red(f"var_d{tag}", "var", {"dims": dims, "unbiased": ub, "keepdim": kd},
            lambda x, dims=dims, ub=ub, kd=kd: {"y": torch.var(x, dims, correction=1 if ub else 0, keepdim=kd)})
    for d, kd in ((0, False), (1, True), (2, False)):
        def mx(x, d=d, kd=kd):
            v, i = torch.max(x, d, keepdim=kd)
            return {"y": v, "indices": i}
        red(f"max_dim{d}" + ("_keep" if kd else ""), "max_dim", {"dim": d, "keepdim": kd}, mx)
    return g


# ---------------------------------------------------------------- pool

def pool_group():
    g = Group("pool", 6)

    def mp(name, shape, k, s, p=(0, 0), d=(1, 1)):
        params = {"kernel": list(k), "stride": list(s), "padding": list(p), "dilation": list(d), "ceil_mode": False}

        def f(x):
            y, i = F.max_pool2d(x, k, s, p, d, ceil_mode=False, return_indices=True)
            return {"y": y, "indices": i}
        g.add(name, "max_pool2d", params, {"x": rn(*shape)}, f, grad=("x",))

    mp("max_pool_k2_s2", (2, 3, 6, 6), (2, 2), (2, 2))
    mp("max_pool_k3_s2_p1", (2, 2, 7, 7), (3, 3), (2, 2), (1, 1))
    mp("max_pool_k3_s1_p1", (1, 2, 5, 5), (3, 3), (1, 1), (1, 1))
    mp("max_pool_k2_s2_odd", (1, 3, 5, 7), (2, 2), (2, 2))
    mp("max_pool_dilation2", (1, 2, 7, 7), (2, 2), (1, 1), (0, 0), (2, 2))
    mp("max_pool_asym", (2, 2, 6, 5), (2, 3), (1, 2), (1, 0))

    def ap(name, shape, k, s, p=(0, 0), cip=True):
        params = {"kernel": list(k), "stride": list(s), "padding": list(p), "ceil_mode": False, "count_include_pad": cip}
        f = lambda x: {"y": F.avg_pool2d(x, k, s, p, ceil_mode=False, count_include_pad=cip)}
        g.add(name, "avg_pool2d", params, {"x": rn(*shape)}, f, grad=("x",))

    ap("avg_pool_k2_s2", (2, 3, 6, 6), (2, 2), (2, 2))
    ap("avg_pool_k3_s2_p1_include_pad", (1, 2, 7, 7), (3, 3), (2, 2), (1, 1), True)
    ap("avg_pool_k3_s2_p1_exclude_pad", (1, 2, 7, 7), (3, 3), (2, 2), (1, 1), False)
    ap("avg_pool_k3_s1_p1_exclude_pad", (2, 1, 5, 4), (3, 3), (1, 1), (1, 1), False)
    ap("avg_pool_asym_include_pad", (1, 2, 5, 6), (2, 3), (1, 2), (1, 1), True)
    ap("avg_pool_k3_s3_odd", (1, 2, 7, 5), (3, 3), (3, 3))

    def up(name, shape, size):
        f = lambda x: {"y": F.interpolate(x, size=list(size), mode="nearest")}
        g.add(name, "upsample_nearest2d", {"size": list(size)}, {"x": rn(*shape)}, f, grad=("x",))

    up("upsample_nearest_2x", (2, 2, 3, 4), (6, 8))
    up("upsample_nearest_5x7_to_8x10", (1, 2, 5, 7), (8, 10))
    up("upsample_nearest_down_7x7_to_3x3", (1, 2, 7, 7), (3, 3))
    up("upsample_nearest_mixed_4x6_to_7x3", (1, 1, 4, 6), (7, 3))
    return g


# ---------------------------------------------------------------- loss

def loss_group():
    g = Group("loss", 7)
    reds = ("mean", "sum", "none")

    for r in reds:
        x = rn(3, 4) * 3
        x[0, 0], x[1, 2], x[2, 3] = 30.0, -30.0, 25.0
        t = torch.rand(3, 4)
        t[0, :2] = torch.tensor([0.9, 0.1])
        t[1, 2:] = torch.tensor([0.1, 0.9])
        t[2, 0], t[2, 1] = 1.0, 0.0
        g.add(f"bce_with_logits_{r}", "bce_with_logits", {"reduction": r, "has_pos_weight": False}, {"x": x, "t": t},
              lambda x, t, r=r: {"y": F.binary_cross_entropy_with_logits(x, t, reduction=r)}, grad=("x", "t"))
    for r in reds:
        x = torch.rand(3, 4) * 0.98 + 0.01
        t = torch.rand(3, 4)
        t[0, :2] = torch.tensor([0.9, 0.1])
        t[1, 0], t[1, 1] = 1.0, 0.0
        g.add(f"bce_{r}", "bce", {"reduction": r}, {"x": x, "t": t},
              lambda x, t, r=r: {"y": F.binary_cross_entropy(x, t, reduction=r)}, grad=("x", "t"))
    for r in reds:
        g.add(f"mse_{r}", "mse", {"reduction": r}, {"x": rn(3, 4), "t": rn(3, 4)},
              lambda x, t, r=r: {"y": F.mse_loss(x, t, reduction=r)}, grad=("x", "t"))
    for r in reds:
        g.add(f"l1_{r}", "l1", {"reduction": r}, {"x": rn(3, 4), "t": rn(3, 4)},
              lambda x, t, r=r: {"y": F.l1_loss(x, t, reduction=r)}, grad=("x", "t"))
    for r in reds:
        for ls in (0.0, 0.1):
            n, c = 4, 5
            t = torch.randint(0, c, (n,)).to(torch.float64)
            g.add(f"cross_entropy_{r}_ls{ls}", "cross_entropy", {"reduction": r, "label_smoothing": ls},
                  {"x": rn(n, c) * 2, "t": t},
                  lambda x, t, r=r, ls=ls: {"y": F.cross_entropy(x, t.long(), reduction=r, label_smoothing=ls)}, grad=("x",))

    def kl(mu, logvar):
        return {"y": (0.5 * (logvar.exp() + mu * mu - 1.0 - logvar).sum(dim=1)).mean()}

    g.add("gaussian_kl_n3_d4", "gaussian_kl", {}, {"mu": rn(3, 4), "logvar": rn(3, 4)}, kl, grad=("mu", "logvar"))
    g.add("gaussian_kl_n1_d2", "gaussian_kl", {}, {"mu": rn(1, 2), "logvar": rn(1, 2)}, kl, grad=("mu", "logvar"))
    return g


# ---------------------------------------------------------------- dcgan

def dcgan_group():
    """Whole pytorch/examples DCGAN nets at image_size 16. Parameters are named as in
    a module whose Sequential is called `main`. Train cases start from fresh BN
    buffers and output the updated ones; eval cases use the buffers left by one
    train forward of the same input."""
    g = Group("dcgan", 8)
    nn = torch.nn

    def net(name, op, params, main, xname, x):
        for m in main:
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
        ps = {f"main.{k}": v.detach().clone() for k, v in main.named_parameters()}
        bufs = [f"main.{k}" for k, _ in main.named_buffers() if k.endswith(("running_mean", "running_var"))]
        convs = tuple(f"main.{i}.weight" for i, m in enumerate(main) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))

        def fwd(train, **ins):
            state = {k[5:]: v for k, v in ins.items() if k.startswith("main.")}
            if train:
                state.update({k: v.detach().clone() for k, v in main.named_buffers()})
            main.train(train)
            outs = {"y": torch.func.functional_call(main, state, (ins[xname],))}
            if train:
                outs.update({b: state[b[5:]] for b in bufs})
            return outs

        g.add(name, op, dict(params, train=True), {**ps, xname: x}, lambda **ins: fwd(True, **ins), grad=(xname,) + convs)
        with torch.no_grad():
            stats = fwd(True, **ps, **{xname: x})
        ins = {**ps, **{b: stats[b] for b in bufs}, xname: x}
        g.add(name + "_eval", op, dict(params, train=False), ins, lambda **ins: fwd(False, **ins))

    nz, ngf, ndf, nc = 8, 4, 4, 1
    gen = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    net("dcgan_generator_16", "dcgan_generator", {"nz": nz, "ngf": ngf, "nc": nc, "image_size": 16}, gen, "z", rn(2, nz, 1, 1))
    disc = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False))
    net("dcgan_discriminator_16", "dcgan_discriminator", {"ndf": ndf, "nc": nc, "image_size": 16}, disc, "x",
        torch.rand(2, nc, 16, 16) * 2 - 1)
    return g


# ---------------------------------------------------------------- linalg

def linalg_group():
    g = Group("linalg", 9)
    well = lambda *s: rn(*s) + 3 * torch.eye(s[-1])
    flip = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for name, a in [("3x3", well(3, 3)), ("batch_2x4x4", well(2, 4, 4)), ("negative_det_3x3", flip @ well(3, 3)),
                    ("1x1", well(1, 1))]:
        g.add(f"inverse_{name}", "inverse", {}, {"x": a}, lambda x: {"y": torch.linalg.inv(x)}, grad=("x",))

        def slogdet(x):
            sign, log = torch.linalg.slogdet(x)
            return {"y": log, "sign": sign}
        g.add(f"slogdet_{name}", "slogdet", {}, {"x": a}, slogdet, grad=("x",))
    return g


if __name__ == "__main__":
    for make in (conv_group, norm_group, attention_group, elementwise_group, reduce_group, pool_group, loss_group, dcgan_group,
                 linalg_group):
        make().write()
