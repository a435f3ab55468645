"""ACCR's cross-modal attention, its ablation (plain cosine matching) and the positional encodings of its tokens."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The attention's initial scale of the query-key cosines (:class:`CrossAttention`): softmax weights
#: ``e^10`` times larger for an identical token than for an unrelated one.
INITIAL_SCALE = 10.0
# Wavelengths of the positional encoding, in tokens: from 2 to this many (transformers' 10000 is
# for sequences of thousands of tokens; an image side here has tens).
_MAX_WAVELENGTH_TOKENS = 256.0


class CrossAttention(nn.Module):
    """Multi-head scaled dot-product attention of query tokens over key/value tokens, with a residual.

    Pre-norm: each side is layer-normalised and projected to queries, keys and values (linear);
    per head, the logits are the cosine similarities of queries and keys times a learned scale
    (query-key normalisation, Henry et al. 2020), the weights their softmax over the keys; the
    output is the queries plus the projected attention-weighted values.

    The query and key projections start as the identity and the scale at :data:`INITIAL_SCALE`: an
    untrained module already attends to the floating tokens that look like the reference token
    (a cosine of 1 against about 0 for unrelated tokens), which a registration head needs from its
    first steps; random projections scaled by ``1 / sqrt(d_head)`` attend almost uniformly.

    Nothing here depends on a token's index, so the module is permutation equivariant: permuting
    the key/value tokens together leaves the output unchanged (and permutes the weights' last
    axis), permuting the queries permutes the output alike. Positions enter only through what the
    caller adds to the tokens (:func:`positional_encoding`).
    """

    def __init__(self, embed_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_queries = nn.LayerNorm(embed_dim)
        self.norm_keys = nn.LayerNorm(embed_dim)
        self.query, self.key, self.value, self.output = (nn.Linear(embed_dim, embed_dim) for _ in range(4))
        with torch.no_grad():
            for projection in (self.query, self.key):
                projection.weight.copy_(torch.eye(embed_dim))
                projection.bias.zero_()
        self.log_scale = nn.Parameter(torch.full((heads,), math.log(INITIAL_SCALE)))

    def _split(self, tokens: Tensor) -> Tensor:
        """``(N, L, D)`` -> ``(N, heads, L, D / heads)``."""
        return tokens.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, queries: Tensor, keys: Tensor, key_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(N, L_q, D)`` queries over ``(N, L_k, D)`` keys: the output ``(N, L_q, D)`` and the weights.

        Parameters
        ----------
        queries : torch.Tensor
            ``(N, L_q, D)`` query tokens; they are also the residual the output adds to.
        keys : torch.Tensor
            ``(N, L_k, D)`` key tokens, which also give the values.
        key_padding_mask : torch.Tensor or None, optional
            ``(N, L_k)`` bool, True for keys to ignore (every query must keep one). Default None: all
            keys are attended.

        Returns
        -------
        output : torch.Tensor
            ``(N, L_q, D)``: the queries plus the projected attention-weighted values.
        weights : torch.Tensor
            ``(N, heads, L_q, L_k)`` attention weights, summing to 1 over the keys.
        """
        normed_keys = self.norm_keys(keys)
        q = self._split(self.query(self.norm_queries(queries)))
        weights = cosine_weights(q, self._split(self.key(normed_keys)), self.log_scale.exp(), key_padding_mask)
        attended = (weights @ self._split(self.value(normed_keys))).transpose(1, 2).flatten(2)
        return queries + self.output(attended), weights


class CosineMatching(nn.Module):
    """ACCR without its attention (an ablation): each query's weights over the keys from their plain cosines.

    The weights are those of one :class:`CrossAttention` head with no learned projection or scale:
    the softmax over the keys of :data:`INITIAL_SCALE` times the cosine similarity of the tokens
    themselves (the untrained attention's weights). Nothing is exchanged between the two images:
    the output is the queries as given, so what comes after sees the reference token alone. No
    parameters; permutation equivariant like the attention. The call is :class:`CrossAttention`'s.
    """

    def forward(self, queries: Tensor, keys: Tensor, key_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(N, L_q, D)`` queries over ``(N, L_k, D)`` keys: the queries and the weights ``(N, 1, L_q, L_k)``.

        Parameters
        ----------
        queries : torch.Tensor
            ``(N, L_q, D)`` query tokens, returned as they are.
        keys : torch.Tensor
            ``(N, L_k, D)`` key tokens.
        key_padding_mask : torch.Tensor or None, optional
            ``(N, L_k)`` bool, True for keys to ignore. Default None: all keys.

        Returns
        -------
        output : torch.Tensor
            ``queries``.
        weights : torch.Tensor
            ``(N, 1, L_q, L_k)`` weights, summing to 1 over the keys.
        """
        scale = torch.full((1,), INITIAL_SCALE, dtype=queries.dtype, device=queries.device)
        return queries, cosine_weights(queries[:, None], keys[:, None], scale, key_padding_mask)


def cosine_weights(queries: Tensor, keys: Tensor, scale: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """Per head, the softmax over the keys of ``scale`` times the cosines of queries and keys.

    Parameters
    ----------
    queries, keys : torch.Tensor
        ``(N, heads, L_q, d)`` and ``(N, heads, L_k, d)`` (not normalised).
    scale : torch.Tensor
        ``(heads,)`` positive scales of the cosines.
    key_padding_mask : torch.Tensor or None
        ``(N, L_k)`` bool, True for keys to ignore; None: all keys.

    Returns
    -------
    torch.Tensor
        ``(N, heads, L_q, L_k)`` weights, summing to 1 over the keys.
    """
    logits = scale[:, None, None] * (F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).transpose(-1, -2))
    if key_padding_mask is not None:
        logits = logits.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    return logits.softmax(dim=-1)


def positional_encoding(positions: Tensor, dim: int) -> Tensor:
    """2-D sinusoidal encodings ``(..., dim)`` of positions ``(..., 2)`` (x, y) in tokens.

    ``dim / 4`` wavelengths from 2 to 256 tokens, geometric; per wavelength ``sin`` and ``cos``
    of x, then of y (Vaswani et al. 2017, one half of the channels per axis).

    Parameters
    ----------
    positions : torch.Tensor
        ``(..., 2)`` positions (x, y) in tokens (any real values).
    dim : int
        Channels of the encoding; a multiple of 4 (otherwise the output has ``4 * (dim // 4)``).

    Returns
    -------
    torch.Tensor
        ``(..., 4 * (dim // 4))`` float32 encodings.
    """
    quarter = dim // 4
    exponents = torch.arange(quarter, dtype=torch.float32, device=positions.device) / max(1, quarter - 1)
    wavelengths = 2.0 * (_MAX_WAVELENGTH_TOKENS / 2.0) ** exponents
    angles = positions.float()[..., None] * (2 * math.pi / wavelengths)  # (..., 2, quarter)
    x, y = angles.unbind(dim=-2)
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=-1)


__all__ = ["INITIAL_SCALE", "CosineMatching", "CrossAttention", "cosine_weights", "positional_encoding"]
