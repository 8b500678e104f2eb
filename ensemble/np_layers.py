"""The decoders' layers in numpy, for streams that run them a frame at a time.

A torch op costs 5-20 µs of dispatch whatever its size; a stream's frame is a (1, 128) row, so
the pitched decoder's step took ~600 µs in torch and the drum convs ~1 ms, nearly all overhead
(measured on the 2-core CPU, one thread). The same float32 arithmetic in numpy takes a tenth of
that. Weights are copied once, when a stream starts; arrays are (F, C): frames × channels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack

import numpy as np
from scipy.special import expit
from threadpoolctl import ThreadpoolController  # scikit-learn's, which librosa brings
from torch import nn

from ensemble.threads import one_thread

Layer = Callable[[np.ndarray], np.ndarray]
_LN10 = math.log(10.0)


@functools.cache
def _blas_libraries() -> list:
    return ThreadpoolController().select(user_api="blas").lib_controllers


def one_blas_thread() -> AbstractContextManager:
    """Hold numpy's BLAS at one thread while the block runs. OpenBLAS splits a product over
    ~260k multiply-adds (a frame's strikes × the kit) across threads, and on the shared 2-core
    machine waiting for the busy core cost a drum stream 16 ms a block instead of 0.8 ms."""
    stack = ExitStack()
    for lib in _blas_libraries():
        stack.enter_context(one_thread(lambda lib=lib: lib.num_threads, lib.set_num_threads))
    return stack


def exp_sigmoid(x: np.ndarray) -> np.ndarray:
    """`dsp.exp_sigmoid` with its defaults (exponent 10, max 2)."""
    return 2.0 * expit(x) ** _LN10 + 1e-7


def dense(module: nn.Linear | nn.Conv1d) -> Layer:
    """A Linear (or a kernel-1 Conv1d) as (F, in) → (F, out)."""
    weight = module.weight.detach().numpy().reshape(module.weight.shape[0], -1).T.copy()
    bias = module.bias.detach().numpy().copy()
    return lambda x: x @ weight + bias


def layer_norm(module: nn.LayerNorm) -> Layer:
    """LayerNorm over the last axis, (F, C) → (F, C)."""
    weight, bias = module.weight.detach().numpy().copy(), module.bias.detach().numpy().copy()
    eps, inverse = np.float32(module.eps), np.float32(1.0 / weight.shape[0])

    def norm(x: np.ndarray) -> np.ndarray:
        centred = x - x.sum(axis=-1, keepdims=True) * inverse  # sum: np.mean's wrapper is slow
        var = (centred * centred).sum(axis=-1, keepdims=True) * inverse
        return centred / np.sqrt(var + eps) * weight + bias

    return norm


def leaky_relu(x: np.ndarray, slope: float = 0.01) -> np.ndarray:
    return np.maximum(x, slope * x)


def sequential(seq: nn.Sequential) -> Layer:
    """A Sequential of Linear / LayerNorm / LeakyReLU (the decoders' MLPs) as one function."""
    layers: list[Layer] = []
    for module in seq:
        if isinstance(module, nn.Linear):
            layers.append(dense(module))
        elif isinstance(module, nn.LayerNorm):
            layers.append(layer_norm(module))
        elif isinstance(module, nn.LeakyReLU):
            slope = module.negative_slope
            layers.append(lambda x, s=slope: leaky_relu(x, s))
        else:
            raise TypeError(f"No numpy layer for {type(module).__name__}.")

    def run(x: np.ndarray) -> np.ndarray:
        for layer in layers:
            x = layer(x)
        return x

    return run


class GRU:
    """`nn.GRU` (batch_first, one sequence) stepped frame by frame with its state carried."""

    def __init__(self, gru: nn.GRU) -> None:
        self._layers = []
        for i in range(gru.num_layers):
            w_ih, w_hh = (getattr(gru, f"{w}_l{i}").detach().numpy().T.copy()
                          for w in ("weight_ih", "weight_hh"))  # fmt: skip
            b_ih, b_hh = (getattr(gru, f"{b}_l{i}").detach().numpy().copy()
                          for b in ("bias_ih", "bias_hh"))  # fmt: skip
            self._layers.append((w_ih, w_hh, b_ih, b_hh))
        self._hidden = gru.hidden_size
        self.state = np.zeros((gru.num_layers, gru.hidden_size), np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(F, in) inputs → (F, H) last-layer outputs; the state moves on F frames."""
        h_size = self._hidden
        for i, (w_ih, w_hh, b_ih, b_hh) in enumerate(self._layers):
            gates_in = x @ w_ih + b_ih  # (F, 3H): every frame's input half at once
            out = np.empty((x.shape[0], h_size), np.float32)
            h = self.state[i]
            for t in range(x.shape[0]):
                gi, gh = gates_in[t], h @ w_hh + b_hh
                rz = expit(gi[: 2 * h_size] + gh[: 2 * h_size])
                r, z = rz[:h_size], rz[h_size:]
                n = np.tanh(gi[2 * h_size :] + r * gh[2 * h_size :])
                h = (1.0 - z) * n + z * h
                out[t] = h
            self.state[i] = h
            x = out
        return x
