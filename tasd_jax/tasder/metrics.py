"""The user's quality metric, and its optional per-batch form.

TASDER keeps a fraction of a model's quality, measured by a function the user
gives: `evaluate(apply, variables) -> float`, higher is better, where `apply`
has the model's `apply_fn(variables, inputs)` signature. A lower-is-better
figure (perplexity, a loss) is passed negated: `lambda a, v: -perplexity(a, v)`;
the budget then bounds how far it may rise (`floor` below).

`MeanOverBatches` is that function in a form the search can stop early: a mean
of per-example scores that lie in known bounds (accuracy: 0 or 1), computed
batch by batch, so an evaluation ends once the remaining batches can no longer
move the mean across the budget's floor. `top1_accuracy` builds one for
classifiers.
"""

import math
from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax import classification

Apply = Callable[[Any, Any], Any]
Metric = Callable[[Apply, Any], float]


def floor(baseline: float, budget: float) -> float:
    """The lowest metric a choice may reach: `budget` of the baseline, measured from
    zero for a positive baseline (0.99 x accuracy) and as "at most (1 - budget) x
    |baseline| worse" for a negative one (a negated loss may rise by 1%)."""
    return baseline - (1.0 - budget) * abs(baseline)


def as_number(value: Any, what: str) -> float:
    """`value` as a finite Python float.

    Raises:
      ValueError: not a number (naming its type) or not finite.
    """
    try:
        number = float(np.asarray(value))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} returned {type(value).__name__} {value!r:.80}, not a number: "
                         "the metric must return one float") from err
    if not math.isfinite(number):
        raise ValueError(f"{what} returned {number}: the metric must be finite")
    return number


class Partial(NamedTuple):
    """The outcome of an evaluation against a floor.

    Attributes:
      passed: the metric is at least the floor.
      value: the metric, or None where the evaluation stopped early.
      batches: batches evaluated.
    """

    passed: bool
    value: float | None
    batches: int


class MeanOverBatches:
    """A metric that is the mean of per-example scores over fixed batches.

    `score(apply, variables, batch) -> (sum of the batch's scores, examples in
    it)`; every per-example score lies in `bounds`. Calling the object gives
    the mean over all batches (the plain metric form); `at_least` evaluates
    batch by batch and stops once the outcome against a floor is certain.

    Args:
      batches: the evaluation data, any objects `score` reads (e.g. dicts of
        arrays with a leading examples axis [B, ...]); read once, kept as a list.
      score: `score(apply, variables, batch) -> (total, count)`, two scalars: the
        sum of the batch's per-example scores and its number of examples.
      bounds: (low, high), the range of one example's score.

    Raises (at construction):
      ValueError: no batch, or bounds that are not (low, high) with low < high.

    Example:
      >>> metric = MeanOverBatches(test_batches, lambda apply, v, b: (      # logits [B, classes]
      ...     jnp.sum(jnp.argmax(apply(v, b["image"]), -1) == b["label"]), len(b["label"])))
      >>> metric(model.apply, variables)                         # mean over every example
      >>> metric.at_least(model.apply, variables, 0.9).passed     # may stop early
    """

    def __init__(self, batches: Iterable[Any], score: Callable[[Apply, Any, Any], tuple],
                 bounds: tuple[float, float] = (0.0, 1.0)):
        self.batches = list(batches)  # a generator is read once, here
        if not self.batches:
            raise ValueError("MeanOverBatches got no batch: the metric needs data")
        low, high = (float(b) for b in bounds)
        if not low < high:
            raise ValueError(f"bounds={bounds} must be (low, high) with low < high")
        self.score, self.bounds = score, (low, high)
        self._counts: list[float] | None = None

    def _batch(self, apply: Apply, variables: Any, i: int) -> tuple[float, float]:
        total, count = self.score(apply, variables, self.batches[i])
        total = as_number(total, f"score of batch {i}")
        count = as_number(count, f"example count of batch {i}")
        if count < 0:
            raise ValueError(f"score of batch {i} counted {count} examples (must be >= 0)")
        return total, count

    def __call__(self, apply: Apply, variables: Any) -> float:
        totals = [self._batch(apply, variables, i) for i in range(len(self.batches))]
        self._counts = [c for _, c in totals]
        examples = sum(self._counts)
        if examples == 0:
            raise ValueError("the evaluation data has no example (every batch counted 0)")
        return sum(t for t, _ in totals) / examples

    def at_least(self, apply: Apply, variables: Any, floor_value: float) -> Partial:
        """Whether the mean reaches `floor_value`, evaluating as few batches as that
        takes (all of them the first time: the example counts are learnt then)."""
        if self._counts is None:
            value = self(apply, variables)
            return Partial(value >= floor_value, value, len(self.batches))
        examples = sum(self._counts)
        low, high = self.bounds
        done_total = done_count = 0.0
        for i in range(len(self.batches)):
            total, count = self._batch(apply, variables, i)
            done_total, done_count = done_total + total, done_count + count
            rest = examples - done_count
            if (done_total + rest * high) / examples < floor_value:
                return Partial(False, None, i + 1)
            if (done_total + rest * low) / examples >= floor_value and rest > 0:
                return Partial(True, None, i + 1)
        value = done_total / examples
        return Partial(value >= floor_value, value, len(self.batches))


def top1_accuracy(batches: Iterable[Any], inputs: str = "image", label: str = "label",
                  mask: str | None = "mask") -> MeanOverBatches:
    """Top-1 accuracy of a classifier over `batches` (dicts), as `MeanOverBatches`.

    Args:
      batches: dicts holding `inputs` (passed to apply as is: images, token ids
        or a nested pytree), `label` (class ids [B], or one-hot / soft labels
        [B, classes], whose argmax is the class) and optionally `mask` ([B],
        False for padding examples).
      inputs, label, mask: the keys; `mask=None` counts every example.

    Returns:
      The metric; `apply(variables, batch[inputs])` must give logits [B, classes].

    Raises:
      ValueError: a batch that is not a mapping or lacks a key (naming the keys it has).

    Example:
      >>> metric = top1_accuracy([{"image": images, "label": labels}], mask=None)  # [B, ...], [B]
      >>> metric(jax.jit(model.apply), variables)                 # a float in [0, 1]
    """
    batches = list(batches)
    _check_keys(batches, (inputs, label) + ((mask,) if mask else ()),
                "top1_accuracy(..., inputs=, label=, mask=)")

    @jax.jit
    def hits(logits, labels, weights):
        return jnp.sum(classification.correct(logits, labels) * weights), jnp.sum(weights)

    def score(apply, variables, batch):
        labels = jnp.asarray(batch[label])
        weights = (jnp.asarray(batch[mask], jnp.float32) if mask
                   else jnp.ones(labels.shape[:1], jnp.float32))
        return hits(apply(variables, batch[inputs]), labels, weights)

    return MeanOverBatches(batches, score, bounds=(0.0, 1.0))


def embedding_agreement(batches: Iterable[Any], embed: Callable[[Any, Any], jax.Array],
                        inputs: str = "inputs", reference: str = "reference") -> MeanOverBatches:
    """Agreement of a model's embeddings with reference ones: the mean, over
    examples, of the cosine similarity between `embed(outputs, batch[inputs])`
    and `batch[reference]`, as `MeanOverBatches` (bounds -1, 1).

    The metric of a sentence encoder searched without labels: the reference
    is the unmodified model's embedding of the same input (see
    `with_reference`), so the unmodified model scores 1.

    Args:
      batches: dicts holding `inputs` (passed to apply as is) and `reference`
        (float [B, D], the embeddings to agree with).
      embed: `embed(outputs, inputs) -> [B, D]`, from what apply returns (e.g.
        hidden states [B, L, H] pooled under the inputs' attention mask).
      inputs, reference: the keys.

    Raises:
      ValueError: a batch that is not a mapping or lacks a key.
    """
    batches = list(batches)
    _check_keys(batches, (inputs, reference), "embedding_agreement(..., inputs=, reference=)")

    @jax.jit
    def cosine_sum(got, want):
        got, want = got.astype(jnp.float32), jnp.asarray(want, jnp.float32)
        norms = jnp.linalg.norm(got, axis=-1) * jnp.linalg.norm(want, axis=-1)
        # A zero embedding agrees with nothing: cosine 0, not NaN.
        cosine = jnp.sum(got * want, axis=-1) / jnp.where(norms > 0, norms, 1.0)
        return jnp.sum(jnp.where(norms > 0, cosine, 0.0)), got.shape[0]

    def score(apply, variables, batch):
        return cosine_sum(embed(apply(variables, batch[inputs]), batch[inputs]), batch[reference])

    return MeanOverBatches(batches, score, bounds=(-1.0, 1.0))


def with_reference(apply: Apply, variables: Any, input_batches: Iterable[Any],
                   embed: Callable[[Any, Any], jax.Array]) -> list[dict[str, Any]]:
    """`[{"inputs": x, "reference": embed(apply(variables, x), x)}]` for each input
    batch `x`: the batches `embedding_agreement` reads, referenced to this model."""
    return [{"inputs": x, "reference": np.asarray(embed(apply(variables, x), x))}
            for x in input_batches]


def _check_keys(batches: list, keys: tuple, how: str) -> None:
    for i, batch in enumerate(batches):
        if not hasattr(batch, "keys"):
            raise ValueError(f"batch {i} is a {type(batch).__name__}, not a dict of arrays")
        for key in keys:
            if key not in batch:
                raise ValueError(f"batch {i} has no {key!r} (it has {sorted(batch.keys())}); "
                                 f"name the keys with {how}")
