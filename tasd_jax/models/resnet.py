"""Residual networks: CIFAR ResNet-20/56 and torchvision-style ImageNet ResNets.

Models to prune, and ResNet-50, the TASD paper's GEMM workload (docs/tasd.md).
He et al., "Deep Residual Learning for Image Recognition",
CVPR 2016:

* `CifarResNet` (paper §4.2): a 3x3 stem of 16 channels, three stages of
  (depth - 2) / 6 basic blocks with 16/32/64 channels (stride 2 entering stages
  2 and 3), global average pooling and a linear head. Shortcuts are option A:
  identity, subsampled and zero-padded in channels where the shape changes, so
  they have no parameters. ResNet-20: 269,722 parameters; ResNet-56: 853,018.
* `ResNet`: torchvision's ImageNet layout, 7x7/2 stem, 3x3/2 max pool, four
  stages of 64/128/256/512 base channels, option-B shortcuts (1x1 conv + BN
  where the shape changes). ResNet-50 is v1.5: the stride of a bottleneck sits
  on its 3x3 conv. At 224x224 and 1000 classes it has exactly torchvision's
  25,557,032 parameters and about 4.1 GMACs per image.

Convolutions have no bias (BatchNorm follows each); padding is torchvision's
explicit padding, so weights map one to one. The last BatchNorm of every
residual branch starts with scale 0 (Goyal et al. 2017), which makes each block
start as the identity and helps training from scratch; it does not change
parameter counts. Only the classifier is a linear layer, built with the
`dense` field.
"""

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from tasd_jax.models import common


def _conv(features: int, size: int, strides: int, name: str) -> nn.Conv:
    """Conv without bias, padded like torchvision's (size // 2 on each side)."""
    pad = size // 2
    return nn.Conv(
        features,
        (size, size),
        strides=(strides, strides),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        name=name,
    )


def _shortcut(x: jax.Array, features: int, strides: int, option: str, norm: Callable) -> jax.Array:
    """The residual branch's skip path: x itself where the shape is kept.

    Option "A" subsamples x spatially and zero-pads its channels (evenly on both
    sides, as in the common CIFAR implementations); option "B" projects it with a
    1x1 conv + BN named `shortcut_conv` / `shortcut_bn`.
    """
    if strides == 1 and x.shape[-1] == features:
        return x
    if option == "A":
        x = x[:, ::strides, ::strides, :]
        extra = features - x.shape[-1]
        return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    x = _conv(features, 1, strides, name="shortcut_conv")(x)
    return norm(name="shortcut_bn")(x)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN and ReLU plus the skip path; output [B, H/s, W/s, features].

    Attributes:
      features: output channels.
      strides: spatial stride of the first conv.
      shortcut: "A" (parameter-free, CIFAR) or "B" (projection, ImageNet).
    """

    features: int
    strides: int = 1
    shortcut: str = "B"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = functools.partial(common.batch_norm, use_running_average=not train)
        y = _conv(self.features, 3, self.strides, name="conv_0")(x)
        y = nn.relu(norm(name="bn_0")(y))
        y = _conv(self.features, 3, 1, name="conv_1")(y)
        y = norm(name="bn_1", scale_init=nn.initializers.zeros)(y)
        return nn.relu(y + _shortcut(x, self.features, self.strides, self.shortcut, norm))


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (strided, v1.5) -> 1x1 convs; output [B, H/s, W/s, 4 * features].

    Attributes:
      features: channels of the inner convs; the block outputs 4x as many.
      strides: spatial stride of the 3x3 conv.
      shortcut: "B" (projection); "A" is accepted for symmetry with BasicBlock.
    """

    features: int
    strides: int = 1
    shortcut: str = "B"
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = functools.partial(common.batch_norm, use_running_average=not train)
        out = self.features * self.expansion
        y = _conv(self.features, 1, 1, name="conv_0")(x)
        y = nn.relu(norm(name="bn_0")(y))
        y = _conv(self.features, 3, self.strides, name="conv_1")(y)
        y = nn.relu(norm(name="bn_1")(y))
        y = _conv(out, 1, 1, name="conv_2")(y)
        y = norm(name="bn_2", scale_init=nn.initializers.zeros)(y)
        return nn.relu(y + _shortcut(x, out, self.strides, self.shortcut, norm))


def _stages(
    x: jax.Array,
    stage_sizes: Sequence[int],
    widths: Sequence[int],
    block_cls: type,
    shortcut: str,
    train: bool,
) -> jax.Array:
    """Runs the residual stages; stage i > 0 starts with a stride-2 block.

    Blocks are named `stage{i}_block{j}` in the calling module.
    """
    for i, (num_blocks, width) in enumerate(zip(stage_sizes, widths)):
        for j in range(num_blocks):
            strides = 2 if i > 0 and j == 0 else 1
            x = block_cls(width, strides=strides, shortcut=shortcut, name=f"stage{i}_block{j}")(
                x, train=train
            )
    return x


def _check_option(shortcut: str) -> None:
    """Raises ValueError unless `shortcut` names option "A" or "B"."""
    if shortcut not in ("A", "B"):
        raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")


class CifarResNet(nn.Module):
    """CIFAR ResNet (He et al. 2016 §4.2) for small images, input [B, H, W, C].

    Three stages of n blocks each, 16 / 32 / 64 channels (times `width`), the
    later two starting with a stride-2 block. `block="basic"` is the paper's:
    two 3x3 convs per block, depth 6n + 2. `block="bottleneck"` uses ResNet-50's
    1x1 -> 3x3 -> 1x1 blocks (outputs 4x the stage's channels, projection
    shortcuts), depth 9n + 2: a ResNet-50 in miniature for 28x28 or 32x32 images.

    Attributes:
      depth: basic 20, 32, 44, 56, ... (6n + 2); bottleneck 11, 20, 29, ... (9n + 2).
      num_classes: width of the linear head `head`.
      shortcut: "A" (default, the paper's CIFAR choice) or "B" (projection).
        Bottleneck blocks always project.
      block: "basic" or "bottleneck".
      width: multiplies every stage's channels (and the stem's), an integer >= 1.
      dense: constructor of linear layers, called as `dense(features, name=...)`.
    """

    depth: int = 20
    num_classes: int = 10
    shortcut: str = "A"
    block: str = "basic"
    width: int = 1
    dense: Callable[..., nn.Module] = nn.Dense

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Maps images [B, H, W, C] (32x32 for CIFAR) to logits [B, num_classes]."""
        if self.block not in _BLOCKS:
            raise ValueError(f"CifarResNet block={self.block!r} must be one of {sorted(_BLOCKS)}")
        block_cls, convs = _BLOCKS[self.block]
        per_depth = 3 * convs  # three stages of n blocks of `convs` convs each
        if self.depth < per_depth + 2 or (self.depth - 2) % per_depth:
            raise ValueError(
                f"CifarResNet depth must be {per_depth}n + 2 with n >= 1 for {self.block} "
                f"blocks ({', '.join(str(per_depth * n + 2) for n in (1, 2, 3))}, ...), "
                f"got {self.depth}"
            )
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"CifarResNet width={self.width!r} must be an integer >= 1")
        _check_option(self.shortcut)
        common.check_images(images, f"resnet{self.depth}")
        x = _conv(16 * self.width, 3, 1, name="conv_stem")(images)
        x = common.batch_norm(use_running_average=not train, name="bn_stem")(x)
        x = nn.relu(x)
        n = (self.depth - 2) // per_depth
        shortcut = "B" if self.block == "bottleneck" else self.shortcut
        x = _stages(x, (n, n, n), tuple(c * self.width for c in (16, 32, 64)), block_cls,
                    shortcut, train)
        x = jnp.mean(x, axis=(1, 2))
        return self.dense(self.num_classes, name="head")(x)


# block name -> (block class, convolutions per block)
_BLOCKS = {"basic": (BasicBlock, 2), "bottleneck": (BottleneckBlock, 3)}


class ResNet(nn.Module):
    """torchvision-style ImageNet ResNet (v1.5 bottlenecks), input [B, H, W, C].

    Attributes:
      stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
      block_cls: BasicBlock (ResNet-18/34) or BottleneckBlock (ResNet-50+).
      num_classes: width of the linear head `head`.
      dense: constructor of linear layers, called as `dense(features, name=...)`.
    """

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    block_cls: type = BottleneckBlock
    num_classes: int = 1000
    dense: Callable[..., nn.Module] = nn.Dense

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Maps images [B, H, W, C] (224x224 for ImageNet) to logits [B, num_classes]."""
        common.check_images(images, "resnet")
        x = _conv(64, 7, 2, name="conv_stem")(images)
        x = common.batch_norm(use_running_average=not train, name="bn_stem")(x)
        x = nn.relu(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        x = _stages(x, self.stage_sizes, (64, 128, 256, 512), self.block_cls, "B", train)
        x = jnp.mean(x, axis=(1, 2))
        return self.dense(self.num_classes, name="head")(x)
