"""Fast CPU paths for the two convolutions Kokoro's vocoder leans on.

On MLX's CPU backend a dilated ``conv1d`` and a ``conv_transpose1d`` take a
naive loop instead of im2col + GEMM: measured here, a kernel-7 dilation-3
conv over 240 steps x 256 channels took 0.53 s against 0.009 s undilated,
and the vocoder's upsampling transpose conv 0.44 s; "Hi." took 12-20 s to
synthesise. Both are rewritten below as one matrix product each (BLAS),
with the same results, and put in place of ``mx.conv1d`` /
``mx.conv_transpose1d`` for kokoro-mlx's weight-normalised conv modules
only. On Apple Silicon (Metal) MLX's own kernels are fast and nothing is
replaced.
"""

from __future__ import annotations

import types
from typing import Any

import mlx.core as mx


def conv1d(
    x: mx.array,
    weight: mx.array,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
) -> mx.array:
    """``mx.conv1d`` (NLC input, (out, kernel, in) weight); dilated ones by im2col."""
    if dilation == 1 or groups != 1:
        return mx.conv1d(
            x, weight, stride=stride, padding=padding, dilation=dilation, groups=groups
        )
    out_channels, kernel, in_channels = weight.shape
    padded = mx.pad(x, [(0, 0), (padding, padding), (0, 0)])
    length = (padded.shape[1] - dilation * (kernel - 1) - 1) // stride + 1
    span = (length - 1) * stride + 1
    taps = [padded[:, k * dilation : k * dilation + span : stride, :] for k in range(kernel)]
    columns = mx.concatenate(taps, axis=-1)  # (B, L, kernel * in), tap-major like the weight
    return columns @ weight.reshape(out_channels, kernel * in_channels).T


def conv_transpose1d(
    x: mx.array,
    weight: mx.array,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    output_padding: int = 0,
    groups: int = 1,
) -> mx.array:
    """``mx.conv_transpose1d`` as one product and an overlap-add:
    input step l adds ``x[l] . weight[:, k, :]`` at output step ``l * stride + k``."""
    if dilation != 1 or groups != 1:
        return mx.conv_transpose1d(
            x,
            weight,
            stride=stride,
            padding=padding,
            dilation=dilation,
            output_padding=output_padding,
            groups=groups,
        )
    batch, steps, in_channels = x.shape
    out_channels, kernel, _ = weight.shape
    blocks = -(-kernel // stride)
    taps = x @ weight.transpose(2, 1, 0).reshape(in_channels, kernel * out_channels)
    taps = taps.reshape(batch, steps, kernel, out_channels)
    taps = mx.pad(taps, [(0, 0), (0, 0), (0, blocks * stride - kernel), (0, 0)])
    taps = taps.reshape(batch, steps, blocks, stride, out_channels)
    full = (steps + blocks - 1) * stride
    out = mx.zeros((batch, full, out_channels), dtype=taps.dtype)
    for j in range(blocks):
        block = taps[:, :, j].reshape(batch, steps * stride, out_channels)
        out = out + mx.pad(block, [(0, 0), (j * stride, (blocks - 1 - j) * stride), (0, 0)])
    length = (steps - 1) * stride - 2 * padding + kernel + output_padding
    if padding + length > full:
        out = mx.pad(out, [(0, 0), (0, padding + length - full), (0, 0)])
    return out[:, padding : padding + length]


class _CoreWithFastConvs(types.ModuleType):
    """``mlx.core`` as kokoro-mlx's modules see it: everything as is but the convs."""

    conv1d = staticmethod(conv1d)
    conv_transpose1d = staticmethod(conv_transpose1d)

    def __getattr__(self, name: str) -> Any:
        return getattr(mx, name)


def use_fast_convs() -> bool:
    """Route kokoro-mlx's conv modules through the functions above when MLX
    runs on the CPU; True if it did."""
    if mx.default_device() != mx.cpu:
        return False
    from kokoro_mlx import modules

    if not isinstance(modules.mx, _CoreWithFastConvs):
        modules.mx = _CoreWithFastConvs("mlx.core")
    return True
