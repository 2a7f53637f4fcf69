"""What a model reads from a batch: images, or BERT token ids with their side inputs."""

from typing import Any, Mapping

import jax

# The keys that hold a model's main input, one per batch: images [B, H, W, C] or token ids [B, L].
INPUT_KEYS = ("image", "input_ids")
# The optional keyword inputs of a token model, [B, L] each.
TOKEN_SIDE_INPUTS = ("token_type_ids", "attention_mask")


def model_inputs(batch: Mapping[str, jax.Array]) -> tuple[tuple, dict]:
    """Positional and keyword model inputs of a batch (images, or BERT token ids)."""
    if "input_ids" in batch:
        kwargs = {k: batch[k] for k in TOKEN_SIDE_INPUTS if k in batch}
        return (batch["input_ids"],), kwargs
    return (batch["image"],), {}


def main_input(batch: Mapping[str, Any]) -> Any:
    """The batch's main input (its `INPUT_KEYS` entry), e.g. to record its shape and dtype.

    Raises:
      ValueError: the batch holds none or several of `INPUT_KEYS`.
    """
    found = [k for k in INPUT_KEYS if k in batch]
    if len(found) != 1:
        raise ValueError(
            f"a batch needs exactly one of the input keys {INPUT_KEYS}; it has {sorted(batch)}"
        )
    return batch[found[0]]
