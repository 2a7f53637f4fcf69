"""Input checks and layer factories shared by the image models."""

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

# torchvision's BatchNorm defaults (momentum 0.1 there is 0.9 here: flax keeps
# `momentum` of the old average), so that recipes and checkpoints carry over.
batch_norm: Callable[..., nn.Module] = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


def check_images(images: jax.Array, model: str, min_size: int = 1) -> None:
    """Raises ValueError unless `images` is a float NHWC batch of size >= min_size.

    Args:
      images: [B, H, W, C] array.
      model: the model's name, for the message.
      min_size: smallest H and W the model's downsampling can take.
    """
    if images.ndim != 4:
        raise ValueError(
            f"{model} expects images shaped [batch, height, width, channels] "
            f"(NHWC, 4 axes), got shape {tuple(images.shape)}"
        )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"{model} expects floating-point images, got dtype {images.dtype}")
    height, width = images.shape[1:3]
    if height < min_size or width < min_size:
        raise ValueError(
            f"{model} needs images of at least {min_size}x{min_size} pixels, got {height}x{width}"
        )
