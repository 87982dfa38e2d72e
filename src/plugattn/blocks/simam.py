"""SimAM — a parameter-free attention from an energy function (Yang et al., ICML 2021; official code
ZjjConan/SimAM ``simam_module.py``).

For each channel, with μ its mean over the n + 1 positions and ``v = Σ(x − μ)² / n``:
``out = x · σ((x − μ)² / (4·(v + λ)) + 0.5)`` — neurons that stand out from their channel weigh more. λ = 1e-4
(the module's default; the authors' training commands pass 0.1). A map with one position (n = 0) makes the
official code divide 0 by 0 (NaN); plugattn takes v = 0 there (the gate is σ(0.5) everywhere). Any rank ≥ 3.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import check_feature_map, require_positive_int
from plugattn.blocks.gate import GateActivation


class SimAM(nn.Module):
    """``x · σ((x − μ)² / (4·(v + λ)) + 0.5)`` per channel (see the module's docstring); no parameters.

    :param channels: the input's channel count C (checked on input; nothing depends on it).
    :param e_lambda: λ > 0 (1e-4; the authors' training commands use 0.1).
    :param device: accepted for a uniform constructor (no parameters are created).
    :param dtype: likewise.
    :raises ValueError: a channel count below 1, or λ ≤ 0.
    """

    plugattn_block = True
    fuses_addition = True
    """``forward(x, identity)`` returns ``identity + forward(x)`` in one pass (``addcmul``)."""

    def __init__(self, channels: int, e_lambda: float = 1e-4, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        """``device`` and ``dtype`` are taken as every block's factory arguments are (SimAM holds no tensor)."""
        super().__init__()
        self.channels = require_positive_int("channels", channels)
        if isinstance(e_lambda, bool) or not isinstance(e_lambda, (int, float)) or not e_lambda > 0:
            raise ValueError(f"e_lambda must be a number > 0 (it keeps the energy finite), got {e_lambda!r}")
        self.e_lambda = float(e_lambda)
        self.gate = GateActivation("element")

    def weights(self, x: Tensor) -> Tensor:
        """The gate, shaped like ``x``."""
        spatial = list(range(2, x.dim()))
        deviation = (x - x.mean(spatial, keepdim=True)).pow(2)
        positions = 1
        for size in x.shape[2:]:
            positions *= size
        variance = deviation.sum(spatial, keepdim=True) / max(positions - 1, 1)
        return self.gate(deviation / (4 * (variance + self.e_lambda)) + 0.5)

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        check_feature_map(x, "SimAM", self.channels, 0)
        weights = self.weights(x)
        return x * weights if identity is None else torch.addcmul(identity, x, weights)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, e_lambda={self.e_lambda}"
