"""VGG16 with BatchNorm (Simonyan & Zisserman 2015, configuration D).

The tile-wise paper's main CNN (docs/tile_wise.md: VGG16 on ImageNet with its
13 conv layers pruned). Thirteen 3x3 convs (with bias, then BN and ReLU,
as torchvision's `vgg16_bn`) in five blocks, each followed by a 2x2 max pool;
then the classifier:

* `variant="cifar"`: 32x32 input -> 1x1x512 features -> linear head
  (14,728,266 parameters for 10 classes).
* `variant="imagenet"`: 224x224 input -> 7x7x512 features flattened ->
  4096 -> 4096 -> classes with ReLU and dropout 0.5 (torchvision's 138,365,992
  parameters for 1000 classes). The first classifier layer takes whatever the
  flattened features are, so other input sizes change its size.

Linear layers are built with the `dense` field (`fc_0`, `fc_1`, `head`).
"""

from typing import Callable

import flax.linen as nn
import jax

from tasd_jax.models import common

# Channels of the 13 convs; "M" is a 2x2 max pool.
_CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_VARIANTS = ("cifar", "imagenet")


class VGG16(nn.Module):
    """VGG16-BN; see the module docstring for the two variants.

    Attributes:
      num_classes: width of the linear head `head`.
      variant: "cifar" or "imagenet".
      dropout_rate: dropout before each hidden classifier layer ("imagenet"
        only; rng name "dropout", active only when train=True).
      dense: constructor of linear layers, called as `dense(features, name=...)`.
    """

    num_classes: int = 10
    variant: str = "cifar"
    dropout_rate: float = 0.5
    dense: Callable[..., nn.Module] = nn.Dense

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Maps images [B, H, W, C] to logits [B, num_classes]; H, W >= 32."""
        if self.variant not in _VARIANTS:
            raise ValueError(f"VGG16 variant must be one of {_VARIANTS}, got {self.variant!r}")
        # Five 2x2 pools: smaller inputs would pool a dimension down to zero.
        common.check_images(images, "vgg16", min_size=32)
        x = images
        conv_index = 0
        for channels in _CONFIG_D:
            if channels == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
                continue
            x = nn.Conv(channels, (3, 3), padding=((1, 1), (1, 1)), name=f"conv_{conv_index}")(x)
            x = common.batch_norm(use_running_average=not train, name=f"bn_{conv_index}")(x)
            x = nn.relu(x)
            conv_index += 1
        x = x.reshape(x.shape[0], -1)
        if self.variant == "imagenet":
            for i in range(2):
                x = nn.relu(self.dense(4096, name=f"fc_{i}")(x))
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return self.dense(self.num_classes, name="head")(x)
