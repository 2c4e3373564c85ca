"""The post-norm encoder block of BERT and its relatives (RoBERTa, DistilBERT, ELECTRA, DeBERTa's with its own
attention, LayoutLMv3, BLIP's text decoder with cross-attention), built from layers.py: attention and
feed-forward, each followed by residual + LayerNorm. A small block runs as one call: our own kernel's
(`native_gemm.post_norm_block`, padded or not) up to its row limit, else, unpadded, aten's
(`kernels.post_norm_layer`)."""

from __future__ import annotations

import torch
from torch import nn

from .cache import KVCache
from . import native_gemm
from .kernels import SMALL_LAYER, FastLinear, derived, native_fused, native_packed, post_norm_layer
from .layers import EPILOGUES, MLP, Attention


class DenseResidualNorm(nn.Module):
    """dense → add residual → LayerNorm: the post-norm output of BERT's attention and feed-forward."""

    def __init__(self, in_size: int, hidden_size: int, eps: float, linear: type[nn.Linear] = FastLinear):
        super().__init__()
        self.dense = linear(in_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class PostNormAttention(nn.Module):
    """self-attention → dense → add residual → LayerNorm; `self_attention` replaces BERT's (DeBERTa's
    disentangled one), and any extra forward arguments are passed on to it."""

    def __init__(self, hidden_size: int, num_heads: int, eps: float, self_attention: nn.Module | None = None,
                 linear: type[nn.Linear] = FastLinear):
        super().__init__()
        self.self = self_attention if self_attention is not None else \
            Attention(hidden_size, num_heads, names=("query", "key", "value", None), linear=linear)
        self.output = DenseResidualNorm(hidden_size, hidden_size, eps, linear)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, *extra) -> torch.Tensor:
        return self.output(self.self(x, mask, *extra), x)


class PostNormEncoderLayer(nn.Module):
    """The BERT block: attention and feed-forward, each followed by residual + LayerNorm.

    `linear` is the class of every projection in the block: FastLinear (oneDNN where its self-check passed),
    nn.Linear to force MKL's sgemm.
    `cross_size` makes it a decoder layer (BLIP's text decoder): causal self-attention over the KV cache, then
    `crossattention` over an encoder output of that width, each with its residual + LayerNorm.
    """

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, act: str, eps: float,
                 self_attention: nn.Module | None = None, linear: type[nn.Linear] = FastLinear,
                 cross_size: int | None = None, layer_idx: int = 0):
        super().__init__()
        names = ("query", "key", "value", None)
        if cross_size is not None and self_attention is None:
            self_attention = Attention(hidden_size, num_heads, names=names, causal=True, layer_idx=layer_idx,
                                       linear=linear)
        self.attention = PostNormAttention(hidden_size, num_heads, eps, self_attention, linear)
        self.crossattention = None if cross_size is None else PostNormAttention(
            hidden_size, num_heads, eps, Attention(hidden_size, num_heads, names=names, source_size=cross_size,
                                                   layer_idx=layer_idx, linear=linear), linear)
        self.intermediate = MLP(hidden_size, intermediate_size, act, names=("dense", None), linear=linear)
        self.output = DenseResidualNorm(intermediate_size, hidden_size, eps, linear)
        # the plain BERT block (its own attention, no cross-attention, GELU or ReLU) may run as one call
        self._block_act = EPILOGUES.get(self.intermediate.act) if self_attention is None and cross_size is None \
            else None
        self._dense = 4 * hidden_size * hidden_size + 2 * hidden_size * intermediate_size

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, *extra, cross: tuple | None = None) -> torch.Tensor:
        """cross (decoder layers): (encoder output (B, S, C_src), its additive mask or None, the KVCache or None)."""
        if self._block_act is not None and not extra:
            rows = x.numel() // x.shape[-1]
            native = rows <= native_gemm.block_rows()
            if native or (mask is None and rows * self._dense < SMALL_LAYER):
                out = self._whole(x, native, mask)
                if out is not None:
                    return out
        x = self.attention(x, mask, *extra)
        if cross is not None:
            source, source_mask, cache = cross
            x = self.crossattention(x, source_mask, cache, source)
        return self.output(self.intermediate(x), x)

    def _whole(self, x: torch.Tensor, native: bool, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """This block in one call for a small float32 CPU input without autograd, else None: our kernel's
        (`native`: its weights packed beside the parameters, shared with the FastLinears' own; a padding mask
        (B, 1, 1, T) goes along) or, unpadded, aten's (`post_norm_layer`: q/k/v concatenated beside the
        parameters, `derived`). The state dict is unchanged. The lookups are plain dict reads: this runs on every
        small request."""
        if not x.is_cpu or x.dtype != torch.float32:
            return None
        if mask is not None:
            B, T = x.shape[:2]
            if not native or mask.shape != (B, 1, 1, T) or mask.dtype != torch.float32:
                return None
            mask = mask.reshape(B, T)  # a view of padding_mask's (B, T); a copy of any other layout
        modules = self.__dict__.get("_whole_modules")
        if modules is None:
            proj = self.attention.self._modules
            modules = self.__dict__["_whole_modules"] = (
                proj["query"], proj["key"], proj["value"], self.attention.output.dense,
                self.attention.output.LayerNorm, self.intermediate.dense, self.output.dense, self.output.LayerNorm)
        q, k, v = (m._parameters for m in modules[:3])
        sources = (q["weight"], k["weight"], v["weight"], q["bias"], k["bias"], v["bias"])
        if sources[0].dtype != torch.float32 or (torch.is_grad_enabled() and sources[0].requires_grad):
            return None
        norm1, norm2 = modules[4]._parameters, modules[7]._parameters
        norms = (norm1["weight"], norm1["bias"], norm2["weight"], norm2["bias"])
        if any(p is None or p.dtype != torch.float32 for p in norms):
            return None
        if native:
            rest = [t for m in (modules[3], modules[5], modules[6]) for t in m._parameters.values() if t is not None]
            weights = derived(self, "_native_block", [t for t in sources if t is not None] + rest + list(norms),
                              lambda: self._block_weights(modules))
            return native_gemm.post_norm_block(x, weights, mask)
        if self._block_act == "tanh" or modules[4].eps != modules[7].eps:
            return None
        qkv = derived(self, "_qkv", sources, lambda: (torch.cat(sources[:3]), torch.cat(sources[3:])))
        return post_norm_layer(x, self.attention.self.num_heads, qkv, *modules[3:], self._block_act == "none")

    def _block_weights(self, modules: tuple) -> native_gemm.BlockWeights:
        """This block's weights for our kernel: packed once, shared with the FastLinears' own packs."""
        attention, norm1, norm2 = self.attention.self, modules[4], modules[7]
        scale = attention.scale if attention.scale is not None else attention.head_dim ** -0.5
        return native_gemm.BlockWeights(
            attention.num_heads, scale, native_fused(modules[:3]), native_packed(modules[3]),
            (norm1.weight, norm1.bias, norm1.eps), native_packed(modules[5]), self._block_act,
            native_packed(modules[6]), (norm2.weight, norm2.bias, norm2.eps))


class PostNormEncoder(nn.Module):
    """`layer.0..n-1` BERT blocks; with `cross_size`, a decoder stack called as `decode_stack` calls it."""

    def __init__(self, num_layers: int, hidden_size: int, num_heads: int, intermediate_size: int, act: str,
                 eps: float, linear: type[nn.Linear] = FastLinear, cross_size: int | None = None):
        super().__init__()
        self.layer = nn.ModuleList(PostNormEncoderLayer(hidden_size, num_heads, intermediate_size, act, eps,
                                                        linear=linear, cross_size=cross_size, layer_idx=i)
                                   for i in range(num_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, encoder_hidden: torch.Tensor | None = None,
                encoder_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask) if encoder_hidden is None else \
                layer(x, mask, cache, cross=(encoder_hidden, encoder_mask, cache))
        return x
