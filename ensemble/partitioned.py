"""Zero-latency streaming convolution with a long fixed impulse response (the stream's reverb).

Uniformly partitioned overlap-save: the impulse response is cut into partitions of P samples.
Partition 0 (the head) is convolved directly with every piece of input as it arrives, so output
is final as soon as its input is, whatever the piece sizes. Partitions 1..K-1 (the tail) reach
at least P samples into the future: each time a whole P-sample input block is in, its spectrum
(the FFT of the last 2P input samples) joins a frequency-domain delay line, and the tail's part
of the next output block is one sum over the line of spectrum × partition spectrum and a single
inverse FFT. A block costs O(K · P) multiply-adds and one FFT pair, not an FFT as long as the
response.
"""

from __future__ import annotations

import numpy as np

from ensemble.errors import EnsembleError


class PartitionedConvolution:
    """Streaming linear convolution y = x * h, sample-exact and without delay.

    Args:
        impulse_response: (L,) h.
        partition: P, samples per partition (a power of two or other fast FFT length).
    """

    def __init__(self, impulse_response: np.ndarray, partition: int = 256) -> None:
        ir = np.asarray(impulse_response, np.float32)
        if ir.ndim != 1 or ir.size == 0 or partition < 1:
            raise EnsembleError(f"Need a (L,) impulse response and partition ≥ 1, not {ir.shape}.")
        p = self.partition = partition
        self._head = ir[:p]
        n_tail = max(0, -(-(ir.size - p) // p))
        tail = np.zeros((n_tail, 2 * p), np.float32)  # row k - 1: partition k, zero-padded
        tail[:, :p] = np.pad(ir[p:], (0, n_tail * p - max(0, ir.size - p))).reshape(n_tail, p)
        # Reversed and doubled, so the partitions matching the delay line's slots in ring order
        # are always one contiguous slice (no copy per block).
        spectra = np.fft.rfft(tail, axis=1)[::-1]
        self._spectra = np.concatenate([spectra, spectra])
        self._line = np.zeros((n_tail, p + 1), np.complex64)  # ring of input-block spectra
        self._slot = 0  # where the next block's spectrum goes
        self._input = np.zeros(2 * p, np.float32)  # previous block + the current one
        self._acc = np.zeros(2 * p, np.float32)  # output of the current block and the next
        self._fill = 0  # samples of the current block in

    def process(self, x: np.ndarray) -> np.ndarray:
        """(n,) the next input samples → (n,) the output at those samples."""
        x = np.asarray(x, np.float32)
        out = np.empty_like(x)
        p, done = self.partition, 0
        while done < x.size:
            m = min(p - self._fill, x.size - done)
            piece, begin = x[done : done + m], self._fill
            self._acc[begin : begin + m + self._head.size - 1] += np.convolve(piece, self._head)
            self._input[p + begin : p + begin + m] = piece
            out[done : done + m] = self._acc[begin : begin + m]
            self._fill += m
            done += m
            if self._fill == p:
                self._next_block()
        return out

    def _next_block(self) -> None:
        """Block complete: add the tail's share of the next output block, move on by P."""
        p = self.partition
        self._acc[:p], self._acc[p:] = self._acc[p:], 0.0
        self._fill = 0
        if self._line.shape[0]:
            n = self._line.shape[0]
            self._line[self._slot] = np.fft.rfft(self._input)
            # Slot s holds the block (slot - s) mod n back, which partition that + 1 delays
            # into the next block; reversed spectra make that one slice.
            start = n - 1 - self._slot
            total = (self._line * self._spectra[start : start + n]).sum(axis=0)
            self._acc[:p] += np.fft.irfft(total, 2 * p)[p:].astype(np.float32)
            self._slot = (self._slot + 1) % n
        self._input[:p] = self._input[p:]
