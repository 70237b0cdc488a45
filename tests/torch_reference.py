"""PyTorch autograd as the reference of the layers and losses, in float64 (the torch extra).

``torch_or_skip()`` skips the calling test with a reason where PyTorch is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnx

RTOL = 1e-10  # float64 against PyTorch: relative, and absolute at this fraction of the largest value


def torch_or_skip():
    torch = pytest.importorskip(
        "torch", reason="PyTorch, the independent reference, is not installed: pip install -e '.[test,torch]'"
    )
    torch.set_num_threads(1)  # tiny tensors; and a thread pool would hang a test forked after it ran
    return torch


def assert_close(got, expected, what: str) -> None:
    expected = np.asarray(expected, np.float64)
    scale = float(np.abs(expected).max()) if expected.size else 1.0
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def torch_layer(layer, params: dict, h):
    """The PyTorch function of one nnx layer, applied to h (params: that layer's torch tensors)."""
    torch = torch_or_skip()
    functional = torch.nn.functional
    if isinstance(layer, nnx.Dense):
        return h @ params["W"] + params["b"]
    if isinstance(layer, nnx.LayerNorm):
        return functional.layer_norm(h, (layer.features,), params["gamma"], params["beta"], layer.eps)
    if isinstance(layer, nnx.GELU):
        return functional.gelu(h, approximate=layer.approximate)
    if isinstance(layer, nnx.LeakyReLU):
        return functional.leaky_relu(h, layer.negative_slope)
    return {nnx.ReLU: torch.relu, nnx.Tanh: torch.tanh, nnx.Sigmoid: torch.sigmoid}[type(layer)](h)


def torch_outputs_and_gradients(model, x: np.ndarray, loss_fn):
    """(outputs, {parameter name: gradient}) of the same network in PyTorch, for the scalar loss_fn(outputs)."""
    torch = torch_or_skip()
    weights = model.get_weights()
    params = {k: torch.tensor(v, requires_grad=True) for k, v in weights.items()}
    h = torch.tensor(x)
    for i, layer in enumerate(model.layers):
        prefix = f"layers.{i}."
        h = torch_layer(layer, {k[len(prefix) :]: p for k, p in params.items() if k.startswith(prefix)}, h)
    loss_fn(h).backward()
    return h.detach().numpy(), {k: p.grad.numpy() for k, p in params.items()}
