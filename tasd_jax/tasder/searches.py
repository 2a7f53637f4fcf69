"""TASDER: layer-wise TASD series for a trained model under an accuracy budget.

The TASD paper (docs/tasd.md) picks, per GEMM layer, a series for the weights
(TASD-W: the weights replaced offline by the sum of their series' terms) or for
the input activations (TASD-A: decomposed at run time), among the series the
target accelerator runs, so that the model keeps a fraction `budget` of its own
test accuracy (0.99: MLPerf-style) and the energy-delay product is lowest.

`Problem` prepares everything once (decomposed weights for every candidate,
activation statistics on a calibration set, the GEMMs, one compiled
evaluation); the searches then only evaluate choices:

* `network`: one series for every layer, exhaustive over the candidates.
* `paper`: the paper's greedy. Every (candidate, layer) pair is ranked by the
  fraction of the layer's non-zeros it drops (fewest first) and applied in
  that order, a pair replacing a layer's earlier choice only when it runs less
  compute; the first pair that takes the accuracy below the budget is undone
  and the search stops there (the paper leaves that pair's fate open).
  Activations follow the paper's rule instead: layer i gets the most
  aggressive candidate j with S_i + alpha > H_j (S_i the layer's measured
  input sparsity, H_j the sparsity candidate j imposes), with the largest
  alpha on a grid that keeps the budget.
* `ours`: starts from `paper`'s choice and keeps going: every remaining
  (candidate, layer) pair that lowers the EDP is tried, most EDP saved first,
  and kept unless it breaks the budget (a pair that breaks it is skipped, not
  the end). Its EDP is therefore never above `paper`'s.

Evaluation compiles once per problem: weights are arguments (a new series
changes values, not shapes) and activation decomposition keeps a traced count
per layer (`activations.keep_top_per_group`), so no candidate recompiles.
"""

import dataclasses
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax import cost, patterns, tasd, tree_paths
from tasd_jax.tasder import activations

MODES = ("network", "paper", "ours")
OPERANDS = ("weights", "activations", "both")
ALPHAS = tuple(np.round(np.arange(-0.5, 0.51, 0.05), 2))


class Choice(NamedTuple):
    """Series per layer (module path -> canonical spec); absent layers stay dense."""

    weights: dict[str, str]
    activations: dict[str, str]


class Evaluated(NamedTuple):
    """A choice with its measured accuracy and modelled EDP (relative to tc, dense)."""

    choice: Choice
    accuracy: float
    relative_edp: float


@dataclasses.dataclass
class Problem:
    """A trained model, its data and an accelerator, prepared for the searches.

    Attributes:
      apply_fn: the model's `apply` (called as apply_fn(variables, images, train=False)).
      variables: trained variables {"params": ..., "batch_stats": ...}.
      eval_batches: evaluation batches {"image", "label", "mask"} (test split).
      calibration: calibration images [B, ...] for activation statistics.
      hardware: accelerator name (`cost.hardware`).
      activation_layers: module paths whose input activations may be decomposed.
    """

    apply_fn: Callable[..., Any]
    variables: Any
    eval_batches: Sequence[Mapping[str, np.ndarray]]
    calibration: np.ndarray
    hardware: str
    activation_layers: Sequence[str] = ()

    def __post_init__(self):
        self.hw = cost.hardware(self.hardware)
        if not self.eval_batches or sum(float(np.sum(b["mask"])) for b in self.eval_batches) == 0:
            raise ValueError("the evaluation data is empty: no example to measure accuracy on")
        flat = tree_paths.flatten(self.variables["params"])
        self.kernels = {p.removesuffix("/kernel"): p for p, w in flat.items()
                        if p.endswith("kernel") and np.ndim(w) >= 2}
        if not self.kernels:
            raise ValueError("the model has no GEMM layer (no 'kernel' of rank >= 2) to decompose")
        unknown = sorted(set(self.activation_layers) - set(self.kernels))
        if unknown:
            raise ValueError(f"activation layers {unknown} are not GEMM layers of the model "
                             f"(layers: {sorted(self.kernels)[:8]}...)")
        shape = tuple(self.calibration.shape[1:])
        self.gemms = cost.gemms_of(
            lambda v, x: self.apply_fn(v, x, train=False), self.variables,
            jax.ShapeDtypeStruct((1, *shape), jnp.float32))
        self.layer_of_gemm = [
            g.weight_path.removeprefix("params/").removesuffix("/kernel") if g.weight_path else None
            for g in self.gemms
        ]
        self.weight_candidates = self.hw.candidate_series("weight")
        self.activation_candidates = _same_m(self.hw.candidate_series("activation"))
        self._decompose_weights(flat)
        self._measure_activations()
        self._compile()
        self.baseline_accuracy = self.accuracy(Choice({}, {}))
        # The reference every relative figure is divided by: the dense model on `tc`.
        self.tc_dense = cost.estimate(self.gemms, "tc")
        self.tc_dense_edp = self.tc_dense.total_edp

    # ------------------------------------------------------------ preparing

    def _decompose_weights(self, flat: dict) -> None:
        """Every layer's kernel under every weight candidate: values, density, dropped share."""
        self.weight_terms: dict[tuple[str, str], np.ndarray] = {}
        self.weight_density: dict[tuple[str, str], float] = {}
        self.weight_dropped: dict[tuple[str, str], float] = {}
        for spec in self.weight_candidates:
            leaves = {layer: flat[path] for layer, path in self.kernels.items()}
            result = tasd.decompose_tree(leaves, [(".", spec)])
            for leaf in result.report:
                approx = np.asarray(tasd.reconstruct(result.terms[leaf.path]))
                self.weight_terms[spec, leaf.path] = approx
                self.weight_density[spec, leaf.path] = leaf.metrics.density
                self.weight_dropped[spec, leaf.path] = 1.0 - leaf.metrics.kept_nonzero

    def _measure_activations(self) -> None:
        """Input sparsity of every activation layer on the calibration set, and the
        share of its non-zeros each candidate drops."""
        _, inputs = jax.jit(lambda v, x: activations.capture_inputs(
            self.apply_fn, v, x, train=False))(self.variables, jnp.asarray(self.calibration))
        self.activation_stats = {p: activations.activation_stats(inputs[p])
                                 for p in self.activation_layers}
        self.activation_dropped: dict[tuple[str, str], float] = {}
        for layer in self.activation_layers:
            x = jnp.asarray(inputs[layer])
            nonzero = max(float(jnp.count_nonzero(x)), 1.0)
            for spec in self.activation_candidates:
                m, k = activations.same_m_keep_count(spec)
                kept = activations.keep_top_per_group(x, m, jnp.asarray(k))
                self.activation_dropped[spec, layer] = 1.0 - float(jnp.count_nonzero(kept)) / nonzero

    def _compile(self) -> None:
        layers = list(self.activation_layers)
        # A design with no activation series (DSTC) still measures its layers' inputs.
        m = (activations.same_m_keep_count(self.activation_candidates[0])[0]
             if layers and self.activation_candidates else 1)

        def correct(params, keep, batch):
            apply = activations.with_activation_series(
                self.apply_fn, keep={p: (m, keep[i]) for i, p in enumerate(layers)})
            logits = apply({**self.variables, "params": params}, batch["image"], train=False)
            hits = (jnp.argmax(logits, -1) == batch["label"]) & batch["mask"]
            return jnp.sum(hits), jnp.sum(batch["mask"])

        self._m = m
        self._correct = jax.jit(correct)
        self._batches = [jax.device_put(b) for b in self.eval_batches]
        self.evaluations = 0

    # ------------------------------------------------------------- measuring

    def accuracy(self, choice: Choice) -> float:
        """Test accuracy with every chosen series applied (weights and activations)."""
        flat = tree_paths.flatten(self.variables["params"])
        for layer, spec in choice.weights.items():
            flat[self.kernels[layer]] = self.weight_terms[spec, layer]
        params = tree_paths.unflatten(flat, like=self.variables["params"])
        keep = jnp.asarray([
            activations.same_m_keep_count(choice.activations[p])[1]
            if p in choice.activations else self._m
            for p in self.activation_layers
        ], jnp.int32)
        hits = total = 0.0
        for batch in self._batches:
            c, n = self._correct(params, keep, batch)
            hits, total = hits + float(c), total + float(n)
        self.evaluations += 1
        return hits / total

    def relative_edp(self, choice: Choice) -> float:
        """Modelled EDP of the choice on the accelerator over the dense model on `tc`."""
        return self.estimate(choice).total_edp / self.tc_dense_edp

    def estimate(self, choice: Choice) -> cost.Estimate:
        """The cost model's estimate of the choice on the accelerator (cycles, energy, EDP).

        Densities are measured: each weight series' share of non-zeros; an activation
        series' input density, and on an unstructured design (DSTC), which skips the
        zeros of the operand as it is, every measured layer's input density."""
        w_specs, a_specs, w_density, a_density = [], [], [], []
        for g, layer in zip(self.gemms, self.layer_of_gemm):
            w = choice.weights.get(layer, "dense")
            a = choice.activations.get(layer, "dense")
            w_specs.append(w if g.weight else "dense")
            a_specs.append(a)
            w_density.append(self.weight_density[w, layer] if (w, layer) in self.weight_density
                             else 1.0)
            stats = self.activation_stats.get(layer)
            exploited = a != "dense" or self.hw.unstructured
            a_density.append(1.0 - stats.mean_sparsity if stats and exploited else 1.0)
        return cost.estimate(self.gemms, self.hw, weight_series=w_specs, activation_series=a_specs,
                             density=w_density, activation_density=a_density)

    def evaluate(self, choice: Choice) -> Evaluated:
        return Evaluated(choice, self.accuracy(choice), self.relative_edp(choice))


def _same_m(candidates: Sequence[str]) -> tuple[str, ...]:
    """The activation candidates that share the most common M (one compiled keep count
    serves them all); "dense" is left out (it is the default)."""
    sized = [(s, activations.same_m_keep_count(s)) for s in candidates if s != "dense"]
    sized = [(s, mk) for s, mk in sized if mk is not None]
    if not sized:
        return ()
    ms = [mk[0] for _, mk in sized]
    common = max(set(ms), key=ms.count)
    return tuple(s for s, mk in sized if mk[0] == common)


def _compute(spec: str) -> float:
    return patterns.as_series(spec).compute_cost


# ----------------------------------------------------------------- searches


def _pairs(problem: Problem, operand: str) -> list[tuple[str, str, str, float]]:
    """(operand, layer, spec, dropped share) for every candidate of every layer."""
    out = []
    if operand in ("weights", "both"):
        out += [("weights", layer, spec, problem.weight_dropped[spec, layer])
                for layer in problem.kernels for spec in problem.weight_candidates if spec != "dense"]
    if operand in ("activations", "both"):
        out += [("activations", layer, spec, problem.activation_dropped[spec, layer])
                for layer in problem.activation_layers for spec in problem.activation_candidates]
    return out


def _with(choice: Choice, operand: str, layer: str, spec: str) -> Choice:
    """`choice` with one more pair; on single-sparse designs a layer holds one operand's series."""
    weights, acts = dict(choice.weights), dict(choice.activations)
    (weights if operand == "weights" else acts)[layer] = spec
    other = acts if operand == "weights" else weights
    other.pop(layer, None)
    return Choice(weights, acts)


def network(problem: Problem, budget: float, operand: str) -> Evaluated:
    """One series for every layer: the lowest EDP among candidates that keep the budget."""
    floor = budget * problem.baseline_accuracy
    best = problem.evaluate(Choice({}, {}))
    specs = sorted(set(problem.weight_candidates) | set(problem.activation_candidates), key=_compute)
    for spec in specs:
        if spec == "dense":
            continue
        weights = ({layer: spec for layer in problem.kernels}
                   if operand in ("weights", "both") and spec in problem.weight_candidates else {})
        acts = ({layer: spec for layer in problem.activation_layers}
                if operand == "activations" and spec in problem.activation_candidates else {})
        if operand == "both" and spec in problem.activation_candidates:
            acts = {layer: spec for layer in problem.activation_layers if layer not in weights}
        if not weights and not acts:
            continue
        result = problem.evaluate(Choice(weights, acts))
        if result.accuracy >= floor and result.relative_edp < best.relative_edp:
            best = result
    return best


def _paper_weights(problem: Problem, floor: float, start: Choice) -> Choice:
    choice = start
    for _, layer, spec, _ in sorted(_pairs(problem, "weights"), key=lambda p: p[3]):
        current = choice.weights.get(layer)
        if current is not None and _compute(spec) >= _compute(current):
            continue  # a pair never makes a layer run more compute
        trial = _with(choice, "weights", layer, spec)
        if problem.accuracy(trial) < floor:
            break  # the paper's stop: the crossing pair is undone
        choice = trial
    return choice


def alpha_rule(problem: Problem, alpha: float, start: Choice) -> Choice:
    """The paper's TASD-A rule: layer i takes the most aggressive candidate j with
    S_i + alpha > H_j (H_j = 1 - K/M, the sparsity candidate j imposes)."""
    choice = start
    for layer in problem.activation_layers:
        if layer in start.weights:
            continue
        sparsity = problem.activation_stats[layer].mean_sparsity
        fitting = [s for s in problem.activation_candidates
                   if sparsity + alpha > 1.0 - _compute(s)]
        if fitting:
            choice = _with(choice, "activations", layer, min(fitting, key=_compute))
    return choice


def _paper_activations(problem: Problem, floor: float, start: Choice) -> Choice:
    best = start
    for alpha in ALPHAS:  # increasing: ever more aggressive
        trial = alpha_rule(problem, float(alpha), start)
        if problem.accuracy(trial) >= floor:
            best = trial
    return best


def paper(problem: Problem, budget: float, operand: str) -> Evaluated:
    """The paper's greedy (module doc): weights by dropped non-zeros, activations by alpha."""
    floor = budget * problem.baseline_accuracy
    choice = Choice({}, {})
    if operand in ("weights", "both"):
        choice = _paper_weights(problem, floor, choice)
    if operand in ("activations", "both") and problem.activation_layers and problem.activation_candidates:
        choice = _paper_activations(problem, floor, choice)
    return problem.evaluate(choice)


def ours(problem: Problem, budget: float, operand: str,
         start: Evaluated | None = None) -> Evaluated:
    """`paper`'s choice, then every remaining EDP-lowering pair, most EDP saved first,
    kept unless it breaks the budget."""
    floor = budget * problem.baseline_accuracy
    current = start or paper(problem, budget, operand)
    gains = []
    for op, layer, spec, _ in _pairs(problem, operand):
        trial = _with(current.choice, op, layer, spec)
        if trial != current.choice:
            gains.append((problem.relative_edp(trial) - current.relative_edp, op, layer, spec))
    for delta, op, layer, spec in sorted(gains):
        if delta >= 0:
            break
        trial = _with(current.choice, op, layer, spec)
        edp = problem.relative_edp(trial)
        if edp >= current.relative_edp:
            continue
        accuracy = problem.accuracy(trial)
        if accuracy >= floor:
            current = Evaluated(trial, accuracy, edp)
    return current


def search(problem: Problem, *, budget: float = 0.99, mode: str = "ours",
           operand: str = "weights") -> tuple[Evaluated, float]:
    """Runs one search; returns (the chosen series with accuracy and EDP, seconds).

    Raises:
      ValueError: an unknown mode or operand, a budget outside (0, 1], or
        activations asked of a model with no eligible layer.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {MODES}")
    if operand not in OPERANDS:
        raise ValueError(f"operand={operand!r} is not one of {OPERANDS}")
    if not 0.0 < budget <= 1.0:
        raise ValueError(f"budget={budget} must lie in (0, 1] (a fraction of the model's accuracy)")
    if operand == "activations" and not problem.activation_layers:
        raise ValueError("operand='activations' but the model has no layer eligible for TASD-A")
    start = time.perf_counter()
    fn = {"network": network, "paper": paper, "ours": ours}[mode]
    result = fn(problem, budget, operand)
    return result, time.perf_counter() - start
