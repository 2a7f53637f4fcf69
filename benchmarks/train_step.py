"""Cost of pruning in the train step: masked (TW 75%) vs dense step of the same model.

    python -m benchmarks.train_step            # CPU; writes OUT_DIR/train_step_cpu.{json,md}
    python -m benchmarks.train_step --reps=41 --steps=20

For each model, two jitted `tasd_jax.training.train_step`s (donated state, as in
the training loop) are timed in one run with interleaved repetitions: the
dense one with SGD + momentum, and the masked one with the same optimizer
wrapped by `pruning.prune` (tw2 75%, G = 32, on every kernel but the head,
masks already set; the step still checks the schedule, masks the gradients
and zeroes the pruned weights). Target: masked / dense <= 1.10.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from tasd_jax import models
from tasd_jax import pruning
from tasd_jax import training

# name, model, model kwargs, image shape, batch size
CASES = (
    ("mlp digits (quick start)", "mlp", {"hidden": (256, 128)}, (8, 8, 1), 64),
    ("mlp 784-1024-1024-10", "mlp", {"hidden": (1024, 1024)}, (28, 28, 1), 256),
    ("lenet5 28x28", "lenet5", {}, (28, 28, 1), 128),
)


def _states(model_name, kwargs, image_shape, batch_size):
    model = models.get_model(model_name, num_classes=10, **kwargs)
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.random((batch_size, *image_shape), np.float32)),
        "label": jnp.asarray(rng.integers(0, 10, batch_size), jnp.int32),
    }
    inner = optax.sgd(0.01, momentum=0.9)
    pruner = pruning.Pruner(
        rules=[(r"^(?!head/).*kernel$", "tw(sparsity=0.75,g=32)")],
        schedule=pruning.one_shot(0.75, step=0),
        global_threshold=True,
    )
    key = jax.random.PRNGKey(0)
    dense = training.create_train_state(key, model, batch, inner)
    masked = training.create_train_state(key, model, batch, pruning.prune(inner, pruner))
    return dense, masked, batch, pruner


def run(reps: int, steps: int) -> dict:
    mach = common.machine()
    step_fn = jax.jit(training.train_step, donate_argnums=0)
    rows = []
    for name, model_name, kwargs, image_shape, batch_size in CASES:
        dense, masked, batch, pruner = _states(model_name, kwargs, image_shape, batch_size)
        masked, _ = step_fn(masked, batch)  # the one-shot mask update happens here
        sparsity = float(pruning.sparsity_metrics(pruner, masked.params, masked.opt_state)["sparsity"])
        states = {"dense": dense, "masked": masked}

        def make(which):
            def many_steps():
                state = states[which]
                for _ in range(steps):
                    state, metrics = step_fn(state, batch)
                states[which] = state
                return metrics["loss"]

            return many_steps

        medians = common.interleaved_medians({k: make(k) for k in states}, repeats=reps, warmup=2)
        rows.append({
            "case": name,
            "batch_size": batch_size,
            "sparsity": sparsity,
            "dense_steps_per_s": steps / medians["dense"],
            "masked_steps_per_s": steps / medians["masked"],
            "ratio_masked_over_dense": medians["masked"] / medians["dense"],
        })
        print(rows[-1], flush=True)
    return {"machine": mach, "reps": reps, "steps_per_rep": steps, "rows": rows}


def markdown(result: dict) -> str:
    lines = [
        "# Masked (TW 75%) vs dense train step, CPU",
        "",
        f"Median of {result['reps']} interleaved repetitions of {result['steps_per_rep']} steps.",
        "",
        "| model | batch | sparsity | dense steps/s | masked steps/s | masked / dense |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['case']} | {r['batch_size']} | {r['sparsity']:.3f} | {r['dense_steps_per_s']:.0f} "
            f"| {r['masked_steps_per_s']:.0f} | {r['ratio_masked_over_dense']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=31)
    parser.add_argument("--steps", type=int, default=20)
    common.add_out_dir(parser)
    args = parser.parse_args()
    result = run(args.reps, args.steps)
    common.write_results(args.out_dir, "train_step_cpu", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
