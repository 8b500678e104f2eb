"""Partitioned convolution (the stream's reverb) against numpy's full convolution."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ensemble.errors import EnsembleError
from ensemble.partitioned import PartitionedConvolution


@pytest.mark.parametrize(
    ("length", "partition"),
    [(22_050, 512), (8_000, 256), (1_000, 1), (300, 256), (256, 256), (257, 256), (1, 16)],
)
def test_partitioned_convolution_equals_full_convolution(length, partition):
    """Pieces of any size, including empty ones and ones spanning several partitions, give
    ``np.convolve(x, h)[:n]`` sample for sample, with no delay."""
    rng = np.random.default_rng(length + partition)
    h = rng.standard_normal(length).astype(np.float32) * np.exp(-np.arange(length) / 3000)
    x = rng.standard_normal(30_000).astype(np.float32)
    expected = np.convolve(x.astype(np.float64), h.astype(np.float64))[: x.size]
    conv = PartitionedConvolution(h, partition)
    inner = rng.integers(0, x.size, 120)
    cuts = np.sort(np.concatenate([[0, x.size], inner, inner[:5]]))  # repeats: empty pieces
    pieces = [conv.process(x[a:b]) for a, b in itertools.pairwise(cuts)]
    out = np.concatenate(pieces)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, expected, atol=1e-5 * np.abs(expected).max())


def test_partitioned_convolution_refuses_bad_input():
    with pytest.raises(EnsembleError):
        PartitionedConvolution(np.zeros(0, np.float32))
    with pytest.raises(EnsembleError):
        PartitionedConvolution(np.ones((2, 3), np.float32))
    with pytest.raises(EnsembleError):
        PartitionedConvolution(np.ones(3, np.float32), partition=0)
