"""A trained model prepared once for every TASDER search, on any accelerator and batch.

    problem = tasder.Problem(model.apply, variables, evaluate=metric, calibration=inputs)
    problem.evaluate(tasder.Choice({"fc2": "2:8"}, {}), hardware="ttc_vegeta_m8")

`Problem` takes the user's model (`apply_fn(variables, inputs)`), its
variables, the user's metric (`metrics`) and one calibration input, and holds
what every search reuses, each computed once on first use: every layer's
weights under every candidate series (values, density, share of non-zeros
dropped), every GEMM layer's input statistics on the calibration input and
what produced it (`graph`), the GEMMs per batch size, the compiled forward
passes, and every metric value already measured (a choice is never evaluated
twice). The hardware and the batch the EDP is computed for are arguments of
each call, not of the problem.

Layers are flax module paths ("stage1_block0/conv_0"); a layer's weights are
its `kernel` leaf (rank >= 2) in `variables["params"]`.
"""

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax import cost, tasd, tree_paths
from tasd_jax.tasder import activations, graph
from tasd_jax.tasder import metrics as metrics_lib


class Choice(NamedTuple):
    """Series per layer, {module path: canonical spec}; a layer absent (or "dense")
    stays dense. On single-sparse-operand designs a layer holds one operand's series.

    Attributes:
      weights: {layer: series} for the layer's kernel (e.g. "2:8", "4:8+1:8").
      activations: {layer: series} for the layer's input activations, taken
        along their last (contraction) axis.

    Example:
      >>> choice = Choice(weights={"head": "4:8"}, activations={"stage1_block0/conv_1": "2:8"})
      >>> problem.evaluate(choice, "ttc_vegeta_m8").metric
    """

    weights: dict[str, str]
    activations: dict[str, str]

    def key(self) -> tuple:
        """A hashable form (dense entries dropped)."""
        return (tuple(sorted((k, v) for k, v in self.weights.items() if v != "dense")),
                tuple(sorted((k, v) for k, v in self.activations.items() if v != "dense")))


DENSE = Choice({}, {})


class Evaluated(NamedTuple):
    """A choice with its measured metric and its modelled EDP relative to the
    dense model on `tc` at the same batch.

    Attributes:
      choice: the series evaluated.
      metric: the user's metric with them applied.
      relative_edp: the modelled EDP on the design over the dense model's on `tc`.

    Example:
      >>> evaluated = problem.evaluate(Choice({"head": "4:8"}, {}), "ttc_vegeta_m8", batch=1)
      >>> evaluated.metric, evaluated.relative_edp        # e.g. (0.91, 0.62)
    """

    choice: Choice
    metric: float
    relative_edp: float


def same_m_candidates(candidates: Sequence[str]) -> tuple[str, ...]:
    """The activation candidates that share the most common M, "dense" left out: one
    compiled forward pass with a traced keep count per layer serves them all
    (`activations.keep_top_per_group`); a mixed-M series (2:4+1:8) is not offered."""
    sized = [(s, activations.same_m_keep_count(s)) for s in candidates if s != "dense"]
    sized = [(s, mk) for s, mk in sized if mk is not None]
    if not sized:
        return ()
    ms = [mk[0] for _, mk in sized]
    common = max(set(ms), key=ms.count)
    return tuple(s for s, mk in sized if mk[0] == common)


class Problem:
    """A model, its metric and a calibration input, prepared for the searches.

    Args:
      apply_fn: `apply_fn(variables, inputs) -> outputs`, e.g. a flax
        `model.apply` (bind `train=False` yourself: `functools.partial(
        model.apply, train=False)`). Nothing else is passed to it.
      variables: the model's variables, with a "params" collection.
      evaluate: the metric, `evaluate(apply, variables) -> float`, higher is
        better (`metrics`); `apply` is `apply_fn` with the chosen activation
        series applied (already compiled: call it directly) and `variables`
        carry the chosen weight series. A `metrics.MeanOverBatches` (e.g.
        `metrics.top1_accuracy(batches)`) lets evaluations stop early.
      calibration: one input pytree (leading axis: examples), used to trace the
        GEMMs and to measure every layer's input statistics.
      activation_layers: "auto" (every layer whose input a ReLU, GELU or SiLU
        produces, found from the traced computation: `graph`), a sequence of
        layer paths, or () for none.
      keep_fraction: the share of an activation's magnitude sum that defines its
        pseudo-density (GELU / SiLU inputs).

    Attributes:
      layers: {layer: its kernel's path in variables["params"]}.
      layer_inputs: {layer: `graph.LayerInput`}: what produces each GEMM layer's
        input, whether TASD-A applies to it and why.
      activation_layers: the layers whose input activations may be decomposed.
      activation_stats: {layer: `activations.ActivationStats`} for every layer
        whose input was captured.
      baseline: the metric of the unmodified model.
      evaluations / batches_evaluated: metric evaluations made so far (an
        early-stopped one counts once) and the batches they read.

    Raises:
      ValueError: before any evaluation, for variables without "params" or without a
        kernel of rank >= 2, a metric that is not callable, activation layers that
        are not GEMM layers of the model, or a calibration input without examples;
        after the first evaluation, a metric that is not a finite number or is 0 on
        the unmodified model (a budget relative to 0 means nothing).

    Example:
      >>> problem = Problem(functools.partial(model.apply, train=False), variables,
      ...                   evaluate=metrics.top1_accuracy(test_batches), calibration=images)
      >>> problem.evaluate(Choice({"dense_1": "2:8"}, {}), "ttc_vegeta_m8").relative_edp
    """

    def __init__(self, apply_fn: Callable[[Any, Any], Any], variables: Any, *,
                 evaluate: Callable[[Callable, Any], float], calibration: Any,
                 activation_layers: "str | Sequence[str]" = "auto", keep_fraction: float = 0.99):
        if not callable(apply_fn):
            raise ValueError(f"apply_fn={apply_fn!r:.80} is not callable")
        if not callable(evaluate):
            raise ValueError(f"evaluate={evaluate!r:.80} is not callable: pass a function "
                             "evaluate(apply, variables) -> float")
        if not hasattr(variables, "keys") or "params" not in variables:
            raise ValueError("variables must be a dict with a 'params' collection (flax "
                             f"model.init's output); got {type(variables).__name__}")
        leaves = jax.tree_util.tree_leaves(calibration)
        if not leaves or any(np.ndim(x) == 0 or np.shape(x)[0] == 0 for x in leaves):
            raise ValueError("calibration must be an input pytree whose every leaf has a "
                             "leading examples axis with at least one example")
        self.apply_fn, self.evaluate_fn, self.keep_fraction = apply_fn, evaluate, keep_fraction
        self.variables = jax.tree.map(jnp.asarray, variables)
        self.calibration = calibration
        self.params = tree_paths.flatten(self.variables["params"])
        self.layers = tree_paths.gemm_layers(self.params)
        if not self.layers:
            raise ValueError("the model has no GEMM layer (no 'kernel' of rank >= 2 in "
                             "variables['params']) to decompose")
        self.layer_inputs = graph.layer_inputs(apply_fn, self.variables, calibration)
        self.activation_layers = self._activation_layers(activation_layers)
        self._measure_inputs()
        self._weights: dict[str, dict] = {}  # spec -> {layer: (values, density, dropped)}
        self._activation_dropped: dict[tuple[str, str], float] = {}
        self._gemms: dict[int, tuple] = {}
        self._estimates: dict[tuple, cost.Estimate] = {}  # (choice, design, batch) -> estimate
        self._gemm_costs: dict[tuple, tuple] = {}  # (design, batch, GEMM, operands) -> costs
        self._relative_edps: dict[tuple, float] = {}  # (choice, design, batch) -> relative EDP
        self._metric_values: dict[tuple, float] = {}
        self._outcomes: dict[tuple, bool] = {}
        self.evaluations = self.batches_evaluated = 0
        self._plain_apply = jax.jit(apply_fn)
        self.baseline = metrics_lib.as_number(
            self.evaluate_fn(self._plain_apply, self.variables), "evaluate on the unmodified model")
        if self.baseline == 0:
            raise ValueError("evaluate returned 0 on the unmodified model: a budget relative "
                             "to it means nothing (shift the metric so that it is not 0)")
        self._metric_values[DENSE.key()] = self.baseline

    # ------------------------------------------------------------ preparing

    def _activation_layers(self, requested: "str | Sequence[str]") -> tuple[str, ...]:
        if isinstance(requested, str):
            if requested != "auto":
                raise ValueError(f"activation_layers={requested!r} must be 'auto', a sequence "
                                 "of layer paths or ()")
            return tuple(p for p, info in self.layer_inputs.items()
                         if info.eligible and p in self.layers)
        requested = tuple(requested)
        unknown = sorted(set(requested) - (set(self.layer_inputs) & set(self.layers)))
        if unknown:
            raise ValueError(f"activation layers {unknown} are not GEMM layers of the model "
                             f"(its layers: {sorted(self.layer_inputs)[:8]}...)")
        return requested

    def _measure_inputs(self) -> None:
        """Every captured layer input's statistics on the calibration input."""
        _, inputs = jax.jit(lambda v, x: activations.capture_inputs(self.apply_fn, v, x))(
            self.variables, self.calibration)
        self._calibration_inputs = {p: inputs[p] for p in self.activation_layers}
        self.activation_stats = {p: activations.activation_stats(x, self.keep_fraction)
                                 for p, x in inputs.items()}

    def input_sparsity(self, layer: str) -> float:
        """The sparsity the paper's TASD-A rule compares with a candidate's: the share
        of exact zeros after a ReLU, the pseudo-sparsity after GELU / SiLU."""
        stats = self.activation_stats[layer]
        source = self.layer_inputs[layer].source
        return stats.mean_sparsity if source == "relu" else stats.pseudo_sparsity

    def weight_series(self, spec: str) -> dict[str, tuple[np.ndarray, float, float]]:
        """{layer: (its kernel under `spec`, density, share of its non-zeros dropped)},
        decomposed on first use (every layer in one call) and kept."""
        if spec not in self._weights:
            leaves = {layer: self.params[path] for layer, path in self.layers.items()}
            result = tasd.decompose_tree(leaves, [(".", spec)])
            self._weights[spec] = {
                leaf.path: (np.asarray(tasd.reconstruct(result.terms[leaf.path])),
                            leaf.metrics.density, 1.0 - leaf.metrics.kept_nonzero)
                for leaf in result.report
            }
        return self._weights[spec]

    def activation_dropped(self, spec: str, layer: str) -> float:
        """Share of the calibration input's non-zeros that a same-M `spec` drops."""
        if (spec, layer) not in self._activation_dropped:
            x = jnp.asarray(self._calibration_inputs[layer])
            nonzero = max(float(jnp.count_nonzero(x)), 1.0)
            m, k = activations.same_m_keep_count(spec)
            kept = activations.keep_top_per_group(x, m, jnp.asarray(k))
            self._activation_dropped[spec, layer] = 1.0 - float(jnp.count_nonzero(kept)) / nonzero
        return self._activation_dropped[spec, layer]

    def candidates(self, hardware: "str | cost.Hardware") -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(weight, activation) candidate series of a design, "dense" left out; the
        activation ones share one M (`same_m_candidates`) and are empty without
        activation layers."""
        hw = _hardware(hardware)
        weights = tuple(s for s in hw.candidate_series("weight") if s != "dense")
        acts = same_m_candidates(hw.candidate_series("activation")) if self.activation_layers else ()
        return weights, acts

    def prepare(self, hardware: "str | cost.Hardware") -> None:
        """Does now what the searches on `hardware` would do on first use: decomposes
        every weight under its candidates, measures what its activation candidates
        drop and compiles its forward pass with activation series (one evaluation
        of the unmodified model through it, which must give the baseline back)."""
        weights, acts = self.candidates(hardware)
        for spec in weights:
            self.weight_series(spec)
        for spec in acts:
            for layer in self.activation_layers:
                self.activation_dropped(spec, layer)
        if acts:
            m = activations.same_m_keep_count(acts[0])[0]
            apply = self._keep_apply(m, tuple((p, m) for p in self.activation_layers))
            self.evaluate_fn(apply, self.variables)

    # ------------------------------------------------------------- measuring

    def variables_for(self, choice: Choice) -> Any:
        """The variables with every chosen weight series applied."""
        self._check(choice)
        if not any(s != "dense" for s in choice.weights.values()):
            return self.variables
        flat = dict(self.params)
        for layer, spec in choice.weights.items():
            if spec != "dense":
                flat[self.layers[layer]] = self.weight_series(spec)[layer][0]
        return {**self.variables, "params": tree_paths.unflatten(flat, like=self.variables["params"])}

    def apply_for(self, choice: Choice) -> Callable[[Any, Any], Any]:
        """`apply_fn` with the chosen activation series, compiled: every same-M choice
        of one design shares one compilation (keep counts are arguments)."""
        self._check(choice)
        chosen = {p: s for p, s in choice.activations.items() if s != "dense"}
        if not chosen:
            return self._plain_apply
        sizes = {p: activations.same_m_keep_count(s) for p, s in chosen.items()}
        if any(mk is None for mk in sizes.values()):  # a mixed-M series: compiled for itself
            return jax.jit(activations.with_activation_series(self.apply_fn, series=chosen))
        ms = {m for m, _ in sizes.values()}
        m = ms.pop() if len(ms) == 1 else None
        layout = tuple((p, m if m is not None else (sizes[p][0] if p in sizes else 1))
                       for p in self.activation_layers)
        return self._keep_apply(m, layout, {p: k for p, (_, k) in sizes.items()})

    def _keep_apply(self, m: int | None, layout: tuple, keep: dict | None = None) -> Callable:
        counts = jnp.asarray([(keep or {}).get(p, size) for p, size in layout], jnp.int32)
        compiled = self._compiled_keep(layout)
        return lambda variables, inputs: compiled(variables, inputs, counts)

    @functools.lru_cache(maxsize=None)  # noqa: B019 (one problem lives as long as its searches)
    def _compiled_keep(self, layout: tuple) -> Callable:
        def run(variables, inputs, counts):
            keep = {p: (size, counts[i]) for i, (p, size) in enumerate(layout)}
            return activations.with_activation_series(self.apply_fn, keep=keep)(variables, inputs)

        return jax.jit(run)

    def metric(self, choice: Choice) -> float:
        """The user's metric with every chosen series applied (measured once per choice)."""
        key = choice.key()
        if key not in self._metric_values:
            value = metrics_lib.as_number(
                self.evaluate_fn(self.apply_for(choice), self.variables_for(choice)), "evaluate")
            self._count(len(getattr(self.evaluate_fn, "batches", ())) or 1)
            self._metric_values[key] = value
        return self._metric_values[key]

    def known(self, choice: Choice, floor: float) -> bool:
        """Whether `passes(choice, floor)` is answered without evaluating."""
        key = choice.key()
        return key in self._metric_values or (key, floor) in self._outcomes

    def passes(self, choice: Choice, floor: float) -> bool:
        """Whether the choice's metric reaches `floor`; a `MeanOverBatches` metric
        stops as soon as that is certain."""
        key = choice.key()
        if key in self._metric_values:
            return self._metric_values[key] >= floor
        if (key, floor) in self._outcomes:
            return self._outcomes[key, floor]
        if not isinstance(self.evaluate_fn, metrics_lib.MeanOverBatches):
            return self.metric(choice) >= floor
        outcome = self.evaluate_fn.at_least(self.apply_for(choice), self.variables_for(choice),
                                            floor)
        self._count(outcome.batches)
        if outcome.value is not None:
            self._metric_values[key] = outcome.value
        self._outcomes[key, floor] = outcome.passed
        return outcome.passed

    def forget(self) -> None:
        """Drops every measured metric but the baseline's, so that the next search
        measures what it uses (for timing one search on its own)."""
        self._metric_values = {DENSE.key(): self.baseline}
        self._outcomes = {}

    def _count(self, batches: int) -> None:
        self.evaluations += 1
        self.batches_evaluated += batches

    def gemms(self, batch: int = 1) -> tuple:
        """The model's GEMMs for `batch` examples (the calibration input's shapes with
        its leading axis set to `batch`)."""
        if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
            raise ValueError(f"batch={batch!r} must be an integer >= 1")
        if batch not in self._gemms:
            shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
                (batch, *np.shape(x)[1:]), jnp.asarray(x).dtype), self.calibration)
            self._gemms[batch] = tuple(cost.gemms_of(self.apply_fn, self.variables, shapes))
        return self._gemms[batch]

    def estimate(self, choice: Choice, hardware: "str | cost.Hardware",
                 batch: int = 1) -> cost.Estimate:
        """The cost model's estimate of the choice (cycles, energy, EDP) for `batch` examples.

        Densities are measured: each weight series' share of non-zeros; an activation
        series' input density (exact zeros on the calibration input); on an
        unstructured design (DSTC), which skips the zeros of the operand as it is,
        every captured layer's input density and every dense kernel's own share of
        non-zeros."""
        self._check(choice)
        hw = _hardware(hardware)
        key = (choice.key(), hw, batch)
        if key not in self._estimates:
            self._estimates[key] = self._estimate(choice, hw, batch)
        return self._estimates[key]

    def _estimate(self, choice: Choice, hw: cost.Hardware, batch: int) -> cost.Estimate:
        return cost.choice.estimate_operands(self.gemms(batch), hw,
                                             self._operands(choice, hw, batch))

    def operands(self, choice: Choice, hardware: "str | cost.Hardware",
                 batch: int = 1) -> list[cost.choice.Operands]:
        """Per GEMM of `gemms(batch)`, its series and measured densities under the choice
        (what `estimate` costs): to cost the same choice on other GEMM shapes."""
        self._check(choice)
        return self._operands(choice, _hardware(hardware), batch)

    def _operands(self, choice: Choice, hw: cost.Hardware, batch: int) -> list:
        """Per GEMM, its `cost.choice.Operands` under the choice."""
        return cost.choice.gemm_operands(
            self.gemms(batch), hw, choice.weights, choice.activations,
            functools.partial(self._weight_density, hw), self.input_density)

    def _weight_density(self, hw: cost.Hardware, gemm: cost.GEMM, spec: str) -> float:
        if spec != "dense":
            return self.weight_series(spec)[gemm.layer][1]
        # The zeros the weights already have count where the design skips them.
        exploited = hw.unstructured and gemm.weight and gemm.layer in self.layers
        return self._kernel_density(gemm.layer) if exploited else 1.0

    @functools.cached_property
    def input_density(self) -> dict[str, float]:
        """{layer of `activation_layers`: its input's density (share of non-zeros) on the
        calibration input}."""
        return {layer: 1.0 - stats.mean_sparsity for layer, stats in self.activation_stats.items()}

    def _rows(self, choice: Choice, hw: cost.Hardware, batch: int) -> np.ndarray:
        """[G, 2] cycles and pJ of each GEMM under the choice. A GEMM's costs depend on
        its own operands only, so each is estimated once per design and batch: a search
        compares thousands of choices that differ in a layer or two."""
        operands = self._operands(choice, hw, batch)
        design = (hw.name, hash(hw))  # hashing the design once, not per GEMM
        keys = [(design, batch, i, op) for i, op in enumerate(operands)]
        missing = [i for i, key in enumerate(keys) if key not in self._gemm_costs]
        if missing:
            gemms = self.gemms(batch)
            est = cost.choice.estimate_operands([gemms[i] for i in missing], hw,
                                                [operands[i] for i in missing])
            for j, i in enumerate(missing):
                self._gemm_costs[keys[i]] = (est.cycles[j], est.energy_pj[j])
        return np.array([self._gemm_costs[key] for key in keys])

    @functools.lru_cache(maxsize=None)
    def _kernel_density(self, layer: str) -> float:
        kernel = np.asarray(self.params[self.layers[layer]])
        return float(np.count_nonzero(kernel) / kernel.size) if kernel.size else 1.0

    def relative_edp(self, choice: Choice, hardware: "str | cost.Hardware", batch: int = 1) -> float:
        """EDP of the choice on `hardware` over the dense model's on `tc`, both at `batch`
        (EDP = total cycles x total energy, as `cost.Estimate.total_edp`)."""
        self._check(choice)
        hw = _hardware(hardware)
        key = (choice.key(), hw.name, hash(hw), batch)
        if key not in self._relative_edps:
            rows = self._rows(choice, hw, batch)
            self._relative_edps[key] = (float(rows[:, 0].sum() * rows[:, 1].sum())
                                        / self._tc_dense_edp(batch))
        return self._relative_edps[key]

    def relative_layer_edp(self, choice: Choice, hardware: "str | cost.Hardware",
                           batch: int = 1) -> float:
        """`relative_edp` with the other aggregation: sums of per-GEMM EDPs."""
        self._check(choice)
        rows = self._rows(choice, _hardware(hardware), batch)
        return float((rows[:, 0] * rows[:, 1]).sum()) / self._tc_dense(batch).layer_edp_sum

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def _tc_dense(self, batch: int) -> cost.Estimate:
        return cost.estimate(self.gemms(batch), "tc")

    def _tc_dense_edp(self, batch: int) -> float:
        return self._tc_dense(batch).total_edp

    def evaluate(self, choice: Choice, hardware: "str | cost.Hardware", batch: int = 1) -> Evaluated:
        """The choice's metric and relative EDP (`relative_edp`)."""
        return Evaluated(choice, self.metric(choice), self.relative_edp(choice, hardware, batch))

    def _check(self, choice: Choice) -> None:
        if not isinstance(choice, Choice):
            raise ValueError(f"a choice must be a tasder.Choice, got {type(choice).__name__}")
        bad = sorted(set(choice.weights) - set(self.layers))
        if bad:
            raise ValueError(f"choice.weights names {bad}, not layers of the model "
                             f"(its layers: {sorted(self.layers)[:8]}...)")
        bad = sorted(p for p, s in choice.activations.items()
                     if s != "dense" and p not in self.activation_layers)
        if bad:
            raise ValueError(f"choice.activations names {bad}, not among the problem's "
                             f"activation layers {list(self.activation_layers)[:8]}")


def _hardware(hardware: "str | cost.Hardware") -> cost.Hardware:
    return cost.hardware(hardware) if isinstance(hardware, str) else hardware


