#!/usr/bin/env python3
"""PyTorch references for the edge cases and arguments where kiln once
differed from PyTorch (issue "PyTorch semantics where kiln still differs"),
written to tests/fixtures/torch/semantics.json in the format of
scripts/torch_fixtures.py (float64 forward values and gradients of
sum(y * gy)). Needs torch.

    python3 scripts/torch_semantics_fixture.py

Values JSON cannot hold (NaN, ±inf) are pinned by the Rust tests instead
(tests/torch_semantics.rs names each).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_fixtures import Group, pos, rn  # noqa: E402

torch.set_default_dtype(torch.float64)


def attention(g):
    def keep_case(name, qs, ks, vs, keep):
        ins = {"q": rn(*qs), "k": rn(*ks), "v": rn(*vs), "keep": keep}
        f = lambda q, k, v, keep: {"y": F.scaled_dot_product_attention(q, k, v, attn_mask=keep.bool())}
        g.add(name, "sdpa_keep", {}, ins, f, grad=("q", "k", "v"))

    keep = torch.ones(3, 5)
    keep[1] = 0.0
    keep[2, 1:] = 0.0
    keep_case("sdpa_fully_masked_row", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), keep)
    keep = torch.ones(2, 1, 4, 6)
    keep[0, 0, 0] = 0.0
    keep[1, 0, 3] = 0.0
    keep[1, 0, 1, ::2] = 0.0
    keep_case("sdpa_fully_masked_row_per_batch", (2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5), keep)

    def gqa(name, qs, ks, causal=False):
        vs = ks[:-1] + (3,)
        ins = {"q": rn(*qs), "k": rn(*ks), "v": rn(*vs)}
        f = lambda q, k, v: {"y": F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)}
        g.add(name, "sdpa_gqa", {"causal": causal}, ins, f, grad=("q", "k", "v"))

    gqa("sdpa_gqa_4q_2kv", (2, 4, 3, 5), (2, 2, 6, 5))
    gqa("sdpa_gqa_6q_1kv_causal", (1, 6, 4, 4), (1, 1, 4, 4), causal=True)
    gqa("sdpa_gqa_equal_heads", (1, 2, 3, 4), (1, 2, 5, 4))


def elementwise(g):
    x = torch.tensor([[-1.0, 0.5, 0.0, 2.0], [-1.5, -1.0, 0.5, 0.25]])
    g.add("clamp_at_bounds", "clamp", {"min": -1.0, "max": 0.5}, {"x": x},
          lambda x: {"y": torch.clamp(x, -1.0, 0.5)}, grad=("x",))
    g.add("clamp_min_equals_max", "clamp", {"min": 0.5, "max": 0.5}, {"x": x},
          lambda x: {"y": torch.clamp(x, 0.5, 0.5)}, grad=("x",))
    g.add("clamp_min_above_max", "clamp", {"min": 0.6, "max": 0.4}, {"x": x},
          lambda x: {"y": torch.clamp(x, 0.6, 0.4)}, grad=("x",))

    def pow_case(name, a, b, grad=("a", "b")):
        g.add(name, "pow", {}, {"a": a, "b": b}, lambda a, b: {"y": torch.pow(a, b)}, grad=grad)

    pow_case("pow_positive_broadcast", pos(3, 1), rn(1, 4))
    pow_case("pow_zero_base", torch.zeros(4), torch.tensor([0.0, 1.0, 2.0, 3.5]))
    pow_case("pow_zero_exponent", torch.tensor([-2.0, 0.0, 3.0]), torch.zeros(3), grad=("a",))
    pow_case("pow_negative_base_integer_exponent", torch.tensor([[-2.0], [-0.5]]), torch.tensor([2.0, 3.0, -1.0]),
             grad=("a",))


def reductions(g):
    x = torch.tensor([[[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], [[0.5, -1.0, 0.5], [4.0, 1.0, 4.0]]])
    for dims, kd in (([2], False), ([1], True), ([0, 2], False), ([0, 1, 2], False)):
        tag = "".join(map(str, dims)) + ("_keep" if kd else "")
        g.add(f"amax_ties_d{tag}", "amax", {"dims": dims, "keepdim": kd}, {"x": x},
              lambda x, dims=dims, kd=kd: {"y": torch.amax(x, dims, kd)}, grad=("x",))
        g.add(f"amin_ties_d{tag}", "amin", {"dims": dims, "keepdim": kd}, {"x": x},
              lambda x, dims=dims, kd=kd: {"y": torch.amin(x, dims, kd)}, grad=("x",))
    g.add("max_all_ties", "max_all", {}, {"x": x}, lambda x: {"y": x.max()}, grad=("x",))
    g.add("min_all_ties", "min_all", {}, {"x": x}, lambda x: {"y": x.min()}, grad=("x",))

    def max_dim(x, d=2):
        v, i = torch.max(x, d)
        return {"y": v, "indices": i}
    g.add("max_dim_ties_first_index", "max_dim", {"dim": 2, "keepdim": False}, {"x": x}, max_dim, grad=("x",))

    for dims, ub, kd in (([2], True, False), ([0, 2], False, True), ([0, 1, 2], True, False)):
        tag = "".join(map(str, dims)) + ("_unbiased" if ub else "_biased") + ("_keep" if kd else "")
        g.add(f"std_d{tag}", "std", {"dims": dims, "unbiased": ub, "keepdim": kd}, {"x": rn(2, 3, 4)},
              lambda x, dims=dims, ub=ub, kd=kd: {"y": torch.std(x, dims, correction=1 if ub else 0, keepdim=kd)},
              grad=("x",))
    g.add("std_large_offset", "std", {"dims": [1], "unbiased": True, "keepdim": False},
          {"x": torch.tensor([[1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0], [-1e9, -1e9 + 0.5, -1e9 + 0.25]])},
          lambda x: {"y": torch.std(x, [1])}, grad=("x",))

    def norm(name, x, ord, dims, kd, grad=("x",)):
        # ±inf are written as strings: JSON has no infinity.
        stored = ord if abs(ord) != float("inf") else ("inf" if ord > 0 else "-inf")
        g.add(name, "vector_norm", {"ord": stored, "dims": dims, "keepdim": kd}, {"x": x},
              lambda x: {"y": torch.linalg.vector_norm(x, ord, dims if dims else None, kd)}, grad=grad)

    inf = float("inf")
    for ord, tag in ((2.0, "2"), (1.0, "1"), (inf, "inf"), (-inf, "neg_inf"), (3.0, "3"), (0.5, "0.5")):
        norm(f"vector_norm_{tag}_d1", rn(3, 4, 2), ord, [1], False)
        norm(f"vector_norm_{tag}_all_keep", rn(2, 3), ord, [], True)
    zero_row = rn(3, 4)
    zero_row[1] = 0.0
    for ord, tag in ((2.0, "2"), (1.0, "1"), (inf, "inf"), (3.0, "3")):
        norm(f"vector_norm_{tag}_zero_row_subgradient", zero_row, ord, [1], False)
    norm("vector_norm_inf_ties", torch.tensor([[1.0, -3.0, 3.0], [2.0, -2.0, 0.5]]), inf, [1], False)
    norm("vector_norm_0_counts", zero_row, 0.0, [1], False, grad=())


def losses(g):
    p = torch.tensor([[0.0, 1.0, 0.3, 0.0], [1.0, 0.6, 1e-15, 1.0 - 1e-15]])
    t = torch.tensor([[0.0, 1.0, 0.5, 1.0], [0.0, 0.2, 0.0, 1.0]])
    for r in ("none", "mean"):
        g.add(f"bce_exact_0_and_1_{r}", "bce", {"reduction": r}, {"x": p, "t": t},
              lambda x, t, r=r: {"y": F.binary_cross_entropy(x, t, reduction=r)}, grad=("x",))
    near = torch.tensor([[1e-15, 1.0 - 1e-15, 1e-8], [0.5, 1e-300, 0.999]])
    g.add("bce_next_to_0_and_1", "bce", {"reduction": "sum"}, {"x": near, "t": torch.rand(2, 3)},
          lambda x, t: {"y": F.binary_cross_entropy(x, t, reduction="sum")}, grad=("x", "t"))
    for r in ("none", "mean", "sum"):
        x, tt, w = torch.rand(3, 4) * 0.98 + 0.01, torch.rand(3, 4), pos(4)
        g.add(f"bce_weight_{r}", "bce", {"reduction": r}, {"x": x, "t": tt, "weight": w},
              lambda x, t, weight, r=r: {"y": F.binary_cross_entropy(x, t, weight=weight, reduction=r)},
              grad=("x", "t"))
        x, w, pw = rn(3, 4) * 3, pos(3, 1), pos(4)
        g.add(f"bce_with_logits_weight_pos_weight_{r}", "bce_with_logits", {"reduction": r},
              {"x": x, "t": tt, "weight": w, "pos_weight": pw},
              lambda x, t, weight, pos_weight, r=r: {
                  "y": F.binary_cross_entropy_with_logits(x, t, weight=weight, pos_weight=pos_weight, reduction=r)},
              grad=("x", "t"))

    def ce(name, x, t, weight=None, ignore_index=-100, ls=0.0, r="mean"):
        ins = {"x": x, "t": t.to(torch.float64)}
        if weight is not None:
            ins["weight"] = weight
        params = {"ignore_index": ignore_index, "label_smoothing": ls, "reduction": r}

        def f(x, t, weight=None):
            return {"y": F.cross_entropy(x, t.long(), weight=weight, ignore_index=ignore_index, reduction=r,
                                         label_smoothing=ls)}
        g.add(name, "cross_entropy_args", params, ins, f, grad=("x",))

    c = 5
    t = torch.tensor([1, -100, 4, 0, 2, -100])
    for r in ("mean", "sum", "none"):
        for ls in (0.0, 0.2):
            ce(f"ce_weight_ignore_{r}_ls{ls}", rn(6, c), t, weight=pos(c), ls=ls, r=r)
    ce("ce_ignore_index_3", rn(4, c), torch.tensor([3, 1, 3, 0]), ignore_index=3)
    ce("ce_ignore_index_3_ls", rn(4, c), torch.tensor([3, 1, 3, 0]), ignore_index=3, ls=0.1)
    ts = torch.randint(0, c, (2, 3, 4))
    ts[0, 1, 2] = ts[1, 0, 0] = -100
    for r in ("mean", "none"):
        ce(f"ce_spatial_{r}", rn(2, c, 3, 4), ts, weight=pos(c), ls=0.1, r=r)
    ce("ce_spatial_1d", rn(2, c, 7), torch.randint(0, c, (2, 7)))
    for r in ("mean", "none"):
        ce(f"ce_unbatched_{r}", rn(c), torch.tensor(3), r=r)
        ce(f"ce_unbatched_weight_ls_{r}", rn(c), torch.tensor(2), weight=pos(c), ls=0.3, r=r)


def autograd_and_modules(g):
    def penalty(x, w):
        # A WGAN-GP style penalty written with torch.autograd.grad.
        x = x.detach().requires_grad_(True)
        h = torch.tanh(x @ w)
        out = (h * h).sum(1).sum()
        (gx,) = torch.autograd.grad(out, x, create_graph=True)
        return {"y": ((gx.norm(2, dim=1) - 1.0) ** 2).mean(), "gx": gx}
    g.add("autograd_grad_penalty", "grad_penalty", {}, {"x": rn(4, 3), "w": rn(3, 5)}, penalty, grad=("w",))

    def bn_cma(x0, x1, x2, w, b):
        bn = torch.nn.BatchNorm2d(3, momentum=None)
        with torch.no_grad():
            bn.weight.copy_(w)
            bn.bias.copy_(b)
        outs = {}
        for i, xi in enumerate((x0, x1, x2)):
            y = bn(xi)
            outs[f"running_mean_{i + 1}"] = bn.running_mean.clone()
            outs[f"running_var_{i + 1}"] = bn.running_var.clone()
            outs[f"num_batches_tracked_{i + 1}"] = bn.num_batches_tracked.clone().to(torch.float64)
        bn.eval()
        outs["y_eval"] = bn(x0)
        outs["y"] = y
        return outs
    g.add("batch_norm_momentum_none", "batch_norm_cma", {},
          {"x0": rn(4, 3, 2, 2), "x1": rn(2, 3, 3, 1) * 2 + 1, "x2": rn(3, 3, 1, 2) - 1, "w": pos(3), "b": rn(3)},
          bn_cma)


def interpolate(g):
    def nearest(name, shape, mode, scale=None, size=None):
        params = {"mode": mode, "scale_factor": scale, "size": size}
        f = lambda x: {"y": F.interpolate(x, size=size, scale_factor=scale, mode=mode)}
        g.add(name, "interpolate", params, {"x": rn(*shape)}, f, grad=("x",))

    nearest("nearest_scale_1.7_0.6", (1, 2, 5, 7), "nearest", scale=[1.7, 0.6])
    nearest("nearest_scale_1.1_same_size", (1, 1, 5, 6), "nearest", scale=[1.1, 1.1])
    nearest("nearest_scale_2.5", (1, 1, 3, 4), "nearest", scale=[2.5, 2.5])
    nearest("nearest_scale_0.5", (2, 1, 7, 6), "nearest", scale=[0.5, 0.5])
    nearest("nearest_scale_3_then_size_3x", (1, 1, 3, 2), "nearest", scale=[3.0, 1.5])
    nearest("nearest_exact_scale_1.7_0.6", (1, 2, 5, 7), "nearest-exact", scale=[1.7, 0.6])
    nearest("nearest_exact_scale_2", (1, 1, 3, 4), "nearest-exact", scale=[2.0, 2.0])
    nearest("nearest_exact_size_5x7_to_8x3", (1, 2, 5, 7), "nearest-exact", size=[8, 3])
    nearest("nearest_exact_size_down_7x7_to_3x3", (1, 1, 7, 7), "nearest-exact", size=[3, 3])


if __name__ == "__main__":
    g = Group("semantics", 11)
    attention(g)
    elementwise(g)
    reductions(g)
    losses(g)
    autograd_and_modules(g)
    interpolate(g)
    g.write()
