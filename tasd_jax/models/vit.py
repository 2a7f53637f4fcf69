"""A small Vision Transformer (Dosovitskiy et al. 2021) for MNIST-sized images.

The TASD paper evaluates ViT-B/16 and decomposes, in transformers, the inputs
of the MLP's second FC layer, i.e. the GELU outputs (docs/tasd.md, TASD-A).
This is the same architecture scaled down for 28x28 images: the defaults cut
a 28x28x1 image into 4x4 = 16 patches of 7x7 (`patch=4` gives 49 patches of
4x4), and any NHWC image whose height and width are multiples of `patch` works.

Layout (pre-LN encoder, as in ViT):

    images [B, H, W, C] -> patches [B, P, patch*patch*C]      (P = H*W / patch^2)
    patch_embed (Dense -> hidden), prepend cls_token, add pos_embedding, dropout
    layer_i, i < num_layers:
      x = x + dropout(attention(attention_ln(x)))
      x = x + dropout(output(gelu(intermediate(mlp_ln(x)))))
    encoder_ln, then head (Dense -> num_classes) on the class token

Every GEMM with a weight is a 2-D Dense `[in, out]` built with the `dense`
field, so a tile-wise-sparse Dense plugs in and the cost model sees plain
GEMMs: `patch_embed` [patch*patch*C, hidden]; in each layer the attention's
`query`, `key`, `value`, `out` [hidden, hidden] (bert.SelfAttention, reshaped
to heads around them), `intermediate` [hidden, mlp_dim] and `output`
[mlp_dim, hidden]; `head` [hidden, num_classes]. Parameter paths are e.g.
`patch_embed/kernel`, `layer_0/attention/query/kernel`,
`layer_0/intermediate/kernel`, `layer_0/output/kernel`, `head/kernel`.

Patches are flattened in (row, column, channel) order with the channel
fastest, the im2col order of a `patch x patch` stride-`patch` convolution
(docs/conventions.md), so `patch_embed/kernel` is that convolution's kernel
`[patch, patch, C, hidden]` reshaped to 2-D.

The activation TASD-A decomposes is the input of each layer's `output` Dense:
the exact (erf) GELU of `intermediate`, with no dropout in between. It is also
sown as `intermediates/layer_i/gelu` [B, P + 1, mlp_dim]: pass
`mutable=["intermediates"]` to `apply` to collect it (e.g. for calibration).

The default (28x28x1, 10 classes) has 139,018 parameters.
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from tasd_jax.models import bert, common


def patchify(images: jax.Array, patch: int) -> jax.Array:
    """[B, H, W, C] -> [B, (H/patch)*(W/patch), patch*patch*C], patches row-major.

    Each patch is flattened (row, column, channel), channel fastest. H and W
    must be multiples of `patch` (the caller checks).
    """
    batch, height, width, channels = images.shape
    rows, cols = height // patch, width // patch
    x = images.reshape(batch, rows, patch, cols, patch, channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)  # [B, rows, cols, patch, patch, C]
    return x.reshape(batch, rows * cols, patch * patch * channels)


class ViTBlock(nn.Module):
    """Pre-LN Transformer encoder layer: [B, L, hidden] -> [B, L, hidden].

    Attributes:
      num_heads: attention heads; must divide the hidden size.
      mlp_dim: MLP inner width.
      dropout_rate: dropout on the attention probabilities and on both
        sub-layer outputs (not between GELU and `output`).
      dense: constructor of linear layers, called as `dense(features, name=...)`.
    """

    num_heads: int
    mlp_dim: int
    dropout_rate: float
    dense: Callable[..., nn.Module]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        batch, length, hidden = x.shape
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        # Every token attends to every token: an all-True mask, which the
        # shared attention's masking then leaves as the identity.
        mask = jnp.ones((batch, length), bool)
        y = nn.LayerNorm(name="attention_ln")(x)
        y = bert.SelfAttention(self.num_heads, self.dropout_rate, self.dense, name="attention")(
            y, mask, train
        )
        x = x + dropout(y)
        y = nn.LayerNorm(name="mlp_ln")(x)
        y = nn.gelu(self.dense(self.mlp_dim, name="intermediate")(y), approximate=False)
        self.sow("intermediates", "gelu", y)  # the `output` Dense's input
        y = self.dense(hidden, name="output")(y)
        return x + dropout(y)


class ViT(nn.Module):
    """Vision Transformer classifier: images [B, H, W, C] -> logits [B, num_classes].

    Attributes:
      num_classes: width of the linear head `head`.
      patch: patch edge in pixels; H and W must be multiples of it.
      hidden: token width; a multiple of num_heads.
      num_layers: encoder layers, named `layer_0` ... .
      num_heads: attention heads.
      mlp_dim: MLP inner width (the `intermediate` / `output` Dense).
      dropout_rate: dropout after the embeddings, on attention probabilities
        and on sub-layer outputs (rng name "dropout", only when train=True).
      dense: constructor of linear layers, called as `dense(features, name=...)`.

    `pos_embedding` has one row per patch plus the class token, so the model is
    tied to the image size it was initialised with.
    """

    num_classes: int = 10
    patch: int = 7
    hidden: int = 64
    num_layers: int = 4
    num_heads: int = 4
    mlp_dim: int = 128
    dropout_rate: float = 0.0
    dense: Callable[..., nn.Module] = nn.Dense

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Maps images [B, H, W, C] to logits [B, num_classes]; `train` enables dropout."""
        self._check(images)
        x = self.dense(self.hidden, name="patch_embed")(patchify(images, self.patch))
        batch, num_patches, _ = x.shape
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, self.hidden), x.dtype)
        x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, self.hidden)), x], axis=1)
        pos = self.param(
            "pos_embedding",
            nn.initializers.normal(stddev=0.02),
            (1, num_patches + 1, self.hidden),
            x.dtype,
        )
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x + pos)
        for i in range(self.num_layers):
            x = ViTBlock(
                self.num_heads, self.mlp_dim, self.dropout_rate, self.dense, name=f"layer_{i}"
            )(x, train)
        x = nn.LayerNorm(name="encoder_ln")(x)
        return self.dense(self.num_classes, name="head")(x[:, 0])

    def _check(self, images: jax.Array) -> None:
        """Raises ValueError for bad fields or image shapes; all checks are static."""
        if self.patch < 1:
            raise ValueError(f"vit patch must be >= 1, got {self.patch}")
        if self.hidden % self.num_heads:
            raise ValueError(
                f"hidden={self.hidden} must be a multiple of num_heads={self.num_heads}"
            )
        common.check_images(images, "vit", min_size=self.patch)
        height, width = images.shape[1:3]
        if height % self.patch or width % self.patch:
            raise ValueError(
                f"vit needs image height and width divisible by patch={self.patch}, "
                f"got {height}x{width}"
            )
