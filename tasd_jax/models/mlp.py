"""Small classifiers for 8x8 digits and MNIST: an MLP and a LeNet-5-style CNN.

The quick-start experiment (tile-wise pruning on scikit-learn's
digits) trains these in seconds on a CPU. Every linear layer is built with the
module's `dense` field, so a tile-wise-sparse Dense can replace nn.Dense.
"""

from typing import Callable, Sequence

import flax.linen as nn
import jax

from tasd_jax.models import common


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs.

    Attributes:
      hidden: widths of the hidden layers, named `dense_0`, `dense_1`, ...
      num_classes: width of the output layer `head`.
      dense: constructor of linear layers, called as `dense(features, name=...)`.
    """

    hidden: Sequence[int] = (256, 128)
    num_classes: int = 10
    dense: Callable[..., nn.Module] = nn.Dense

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
        """Maps inputs [B, ...] (flattened to [B, features]) to logits [B, classes].

        `train` is accepted for a uniform model interface; the MLP has no dropout
        or BatchNorm, so it changes nothing.
        """
        del train
        if inputs.ndim < 2:
            raise ValueError(
                f"MLP expects a batch [batch, ...] with at least 2 axes, got shape "
                f"{tuple(inputs.shape)}"
            )
        x = inputs.reshape(inputs.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = nn.relu(self.dense(width, name=f"dense_{i}")(x))
        return self.dense(self.num_classes, name="head")(x)


class LeNet5(nn.Module):
    """LeNet-5-style CNN (LeCun et al. 1998) with ReLU and max pooling.

    conv 6@5x5 -> pool 2 -> conv 16@5x5 -> pool 2 -> dense 120 -> dense 84 ->
    dense classes. The convolutions use SAME padding (the original used VALID on
    32x32) so 8x8 digits work: 8x8 -> 4x4 -> 2x2 spatial, and 28x28 MNIST gives
    7x7. Any input of at least 4x4 pixels works.

    Attributes:
      num_classes: width of the output layer `head`.
      dense: constructor of linear layers, called as `dense(features, name=...)`.
    """

    num_classes: int = 10
    dense: Callable[..., nn.Module] = nn.Dense

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Maps images [B, H, W, C] to logits [B, num_classes].

        `train` is accepted for a uniform model interface and changes nothing.
        """
        del train
        common.check_images(images, "lenet5", min_size=4)
        x = images
        for i, channels in enumerate((6, 16)):
            x = nn.relu(nn.Conv(channels, (5, 5), padding="SAME", name=f"conv_{i}")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(self.dense(120, name="dense_0")(x))
        x = nn.relu(self.dense(84, name="dense_1")(x))
        return self.dense(self.num_classes, name="head")(x)
