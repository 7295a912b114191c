"""The JSON encoding every PyTorch fixture script writes tensors in."""
import math


def enc(t):
    """{"shape", "data"} of a tensor, its values as Python floats; refuses NaN and ±inf."""
    t = t.detach()
    data = [float(v) for v in t.reshape(-1).tolist()]
    if not all(math.isfinite(v) for v in data):
        raise ValueError("non-finite value in fixture")
    return {"shape": list(t.shape), "data": data}
