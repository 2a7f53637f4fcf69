"""Optimizers and learning-rate schedules from plain values (optax underneath)."""

import optax

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear")
# The schedules that decay over the run, so need its length.
_DECAYING = ("cosine", "warmup_cosine", "linear")


def make_lr_schedule(
    name: str, learning_rate: float, num_steps: int | None, warmup_steps: int = 0
) -> optax.Schedule:
    """Learning rate against step: constant, cosine, warmup_cosine or linear decay to 0
    at `num_steps` (warmup_cosine first rises from 0 over `warmup_steps`).

    Raises:
      ValueError: an unknown `name`, or a decaying schedule without `num_steps`.
    """
    if name not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={name!r} is not one of {LR_SCHEDULES}")
    if name in _DECAYING and num_steps is None:
        raise ValueError(
            f"lr_schedule={name!r} decays over the run, so it needs num_steps (got None)"
        )
    if name == "constant":
        return optax.constant_schedule(learning_rate)
    if name == "cosine":
        return optax.cosine_decay_schedule(learning_rate, num_steps)
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, num_steps)
    return optax.linear_schedule(learning_rate, 0.0, num_steps)


def make_optimizer(
    name: str,
    learning_rate: optax.ScalarOrSchedule,
    *,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """The optimizer `name` (sgd, momentum, adam or adamw) at `learning_rate`.

    `weight_decay` is coupled (L2, added to the gradient) for sgd and momentum,
    as in torch.optim.SGD (the tile-wise paper's optimizer), and decoupled for
    adamw; adam ignores it. `momentum` applies to "momentum" only, `nesterov`
    to sgd and momentum.

    Raises:
      ValueError: an unknown `name`.
    """
    if name in ("sgd", "momentum"):
        sgd = optax.sgd(
            learning_rate, momentum=momentum if name == "momentum" else None, nesterov=nesterov
        )
        return optax.chain(optax.add_decayed_weights(weight_decay), sgd) if weight_decay else sgd
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    raise ValueError(f"optimizer={name!r} is not one of {OPTIMIZERS}")
