"""TASDER's searches: series per layer under a quality budget, lowest EDP first.

The TASD paper (docs/tasd.md) picks, per GEMM layer, a series for the weights
(TASD-W: the weights replaced offline by the sum of their series' terms) or
for the input activations (TASD-A: decomposed at run time), among the series
the target accelerator runs, so that the model keeps a fraction `budget` of
its own metric (0.99: MLPerf-style) and the energy-delay product is lowest.
Every search runs on a prepared `Problem` (one per model: the hardware and
the batch are arguments here) and returns a `Result`:

* `network`: one series for every layer. The candidates are sorted by EDP
  and the first that keeps the budget is the answer (the lowest-EDP one).
* `paper`: the paper's greedy. Every (candidate, layer) weight pair is ranked
  by the share of the layer's non-zeros it drops (fewest first) and applied
  in that order, a pair replacing a layer's earlier series only when it runs
  less compute, until the metric falls below the budget; the crossing is
  found by bisection on the prefix of applied pairs (about log2(pairs)
  evaluations; where the metric does not fall monotonically along the list,
  bisection finds a crossing, not necessarily the first). Activations follow
  the paper's rule: layer i takes the most aggressive candidate j with
  S_i + alpha > H_j (S_i its measured input sparsity, H_j = 1 - compute of
  j), alpha the largest on a grid that keeps the budget (bisection again).
* `ours`: starts from the better of `network` and `paper` and steps down
  every layer operand's ladder of candidates (its least aggressive one below
  what it runs now), steps ranked by EDP saved per share of non-zeros
  dropped and applied one after another; the longest run of steps that keeps
  the budget is taken (the first step is tested first: next to the budget's
  edge it usually breaks it, else bisection). A step that breaks the budget
  is paid for, where the whole still saves EDP, by easing other layers: one
  layer a step back up its ladder (or, on a single-sparse-operand design,
  its series moved to the other operand), else a run of such eases, cheapest
  first (`_swap`); if nothing pays for it, the same is tried with the layer
  stepping further down (a deeper rung saves more, so it can pay for eases a
  shallow one cannot); a step nothing pays for blocks its layer operand. Blocked layer operands are retried once later
  steps have been taken, until nothing changes or `refine_evaluations`
  metric evaluations are spent (default `REFINE_EVALUATIONS`: on the MNIST
  ResNet-20 with both operands this keeps the search under 15 s; `None`
  searches until nothing changes, about 10x longer there). Its EDP is never
  above either starting point's.
* `exhaustive`: every combination of per-layer series, sorted by EDP; the
  first that keeps the budget is the optimum. Refused above
  `EXHAUSTIVE_LIMIT` combinations (the message gives the count).

On a single-sparse-operand design a layer carries a series on one operand:
a move on one operand clears the other's.
"""

import itertools
import math
import time
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from tasd_jax import cost, patterns
from tasd_jax.tasder import metrics
from tasd_jax.tasder.problem import DENSE, Choice, Problem, _hardware

MODES = ("network", "paper", "ours", "exhaustive")
OPERANDS = ("weights", "activations", "both")
ALPHAS = tuple(float(a) for a in np.round(np.arange(-0.5, 0.51, 0.05), 2))
EXHAUSTIVE_LIMIT = 20_000
REFINE_EVALUATIONS = 10
SWAP_PARTNERS = 4


class Result(NamedTuple):
    """A search's answer.

    Attributes:
      choice: the chosen series ({layer: spec} for weights and activations).
      metric: the user's metric with every chosen series applied (measured).
      relative_edp: the modelled EDP of the choice on `hardware` over the dense
        model's on `tc`, both for `batch` examples (EDP = total cycles x total
        energy of the model's GEMMs: what the search minimises).
      baseline: the metric of the unmodified model; budget: the fraction kept.
      hardware, batch, mode, operand: what was searched.
      seconds: the search's wall time; evaluations: metric evaluations it made
        (an early-stopped one counts once; choices measured before are free).
      relative_layer_edp: the same ratio with the other aggregation, the sum of
        per-GEMM EDPs (None in results saved before it was recorded).

    Example:
      >>> result = search(problem, hardware="ttc_vegeta_m8", budget=0.99)
      >>> result.choice.weights       # {"fc2": "4:8", "head": "4:8+1:8"}
      >>> result.metric, result.relative_edp, result.evaluations
    """

    choice: Choice
    metric: float
    relative_edp: float
    baseline: float
    budget: float
    hardware: str
    batch: int
    mode: str
    operand: str
    seconds: float = 0.0
    evaluations: int = 0
    relative_layer_edp: float | None = None


class _Search(NamedTuple):
    problem: Problem
    hw: cost.Hardware
    floor: float
    operand: str
    batch: int
    weight_specs: tuple[str, ...]
    activation_specs: tuple[str, ...]
    compute: Mapping[str, float]  # each candidate's and "dense"'s share of dense compute
    refine_evaluations: int | None = None
    stop_at: int | None = None  # problem.evaluations past which unmeasured choices fail

    def edp(self, choice: Choice) -> float:
        return self.problem.relative_edp(choice, self.hw, self.batch)

    def passes(self, choice: Choice) -> bool:
        if (self.stop_at is not None and self.problem.evaluations >= self.stop_at
                and not self.problem.known(choice, self.floor)):
            return False
        return self.problem.passes(choice, self.floor)

    @property
    def spent(self) -> bool:
        return self.stop_at is not None and self.problem.evaluations >= self.stop_at

    @property
    def uses_weights(self) -> bool:
        return self.operand in ("weights", "both") and bool(self.weight_specs)

    @property
    def uses_activations(self) -> bool:
        return (self.operand in ("activations", "both") and bool(self.activation_specs)
                and bool(self.problem.activation_layers))

    def moves(self) -> list[tuple[str, str, str]]:
        """(operand, layer, spec) for every candidate of every layer."""
        out = []
        if self.uses_weights:
            out += [("weights", layer, s) for layer in self.problem.layers for s in self.weight_specs]
        if self.uses_activations:
            out += [("activations", layer, s) for layer in self.problem.activation_layers
                    for s in self.activation_specs]
        return out

    def with_move(self, choice: Choice, operand: str, layer: str, spec: str) -> Choice:
        weights, acts = dict(choice.weights), dict(choice.activations)
        (weights if operand == "weights" else acts)[layer] = spec
        if self.hw.sparse_operands < 2:
            (acts if operand == "weights" else weights).pop(layer, None)
        return Choice(weights, acts)


def _first_passing(search: _Search, choices: Sequence[Choice]) -> Choice:
    """The lowest-EDP choice that keeps the budget (dense if none does, or if none is
    below the dense EDP)."""
    dense_edp = search.edp(DENSE)
    scored = sorted(((search.edp(c), i) for i, c in enumerate(choices)), key=lambda t: t)
    for edp, i in scored:
        if edp >= dense_edp:
            break
        if search.passes(choices[i]):
            return choices[i]
    return DENSE


def _network(search: _Search) -> Choice:
    choices = []
    if search.uses_weights:
        choices += [Choice({layer: s for layer in search.problem.layers}, {})
                    for s in search.weight_specs]
    if search.uses_activations:
        choices += [Choice({}, {layer: s for layer in search.problem.activation_layers})
                    for s in search.activation_specs]
    return _first_passing(search, choices)


def _last_passing(search: _Search, prefix: list[Choice]) -> Choice:
    """prefix[0] keeps the budget; the last prefix[i] that does, by bisection on i
    (assuming the metric falls along the list)."""
    return prefix[_crossing(search, prefix, near_edge=False)]


def _dedupe(choices: list[Choice]) -> list[Choice]:
    out = []
    for c in choices:
        if not out or c.key() != out[-1].key():
            out.append(c)
    return out


def alpha_rule(problem: Problem, specs: Sequence[str], alpha: float, start: Choice,
               sparse_operands: int = 1) -> Choice:
    """The paper's TASD-A rule: each activation layer (without a weight series on a
    single-sparse design) takes the most aggressive candidate j with
    S_i + alpha > H_j (S_i: `problem.input_sparsity`, H_j = 1 - compute of j).

    Returns:
      `start` with the activation series the rule gives (its weights unchanged).

    Example:
      >>> _, specs = problem.candidates("ttc_vegeta_m8")
      >>> alpha_rule(problem, specs, alpha=0.1, start=Choice({}, {})).activations
    """
    return _alpha_rule(problem, specs, _compute_shares(specs), alpha, start, sparse_operands)


def _alpha_rule(problem: Problem, specs: Sequence[str], compute: Mapping[str, float],
                alpha: float, start: Choice, sparse_operands: int) -> Choice:
    """`alpha_rule` with each spec's share of dense compute given (`_compute_shares`)."""
    acts = dict(start.activations)
    for layer in problem.activation_layers:
        if sparse_operands < 2 and start.weights.get(layer, "dense") != "dense":
            continue
        sparsity = problem.input_sparsity(layer)
        fitting = [s for s in specs if sparsity + alpha > 1.0 - compute[s]]
        if fitting:
            acts[layer] = min(fitting, key=compute.get)
    return Choice(dict(start.weights), acts)


def _paper(search: _Search) -> Choice:
    choice = DENSE
    problem = search.problem
    if search.uses_weights:
        pairs = sorted((problem.weight_series(spec)[layer][2], i, layer, spec)
                       for i, (op, layer, spec) in enumerate(search.moves()) if op == "weights")
        prefix = [choice]
        for _, _, layer, spec in pairs:
            current = prefix[-1].weights.get(layer)
            if current is not None and search.compute[spec] >= search.compute[current]:
                continue  # a pair never makes a layer run more compute
            prefix.append(search.with_move(prefix[-1], "weights", layer, spec))
        choice = _last_passing(search, prefix)
    if search.uses_activations:
        start = choice
        trials = _dedupe([start] + [_alpha_rule(problem, search.activation_specs, search.compute,
                                                a, start, search.hw.sparse_operands)
                                    for a in ALPHAS])
        choice = _last_passing(search, trials)
    return choice


def _dropped(search: _Search, op: str, layer: str, spec: str) -> float:
    """Share of the layer operand's non-zeros the series drops (the paper's ranking key)."""
    if op == "weights":
        return search.problem.weight_series(spec)[layer][2]
    return search.problem.activation_dropped(spec, layer)


def _current_spec(choice: Choice, op: str, layer: str) -> str:
    return (choice.weights if op == "weights" else choice.activations).get(layer, "dense")


def _chain(search: _Search, current: Choice, blocked: dict) -> list[tuple[Choice, tuple]]:
    """One step down every layer operand's ladder from `current` (its least
    aggressive candidate below what it runs now, if that lowers the EDP), most EDP
    saved per share of non-zeros dropped first, applied one after another (a step
    that no longer lowers the EDP by then is left out): [(choice after the step,
    the step), ...]. `blocked` maps (operand, layer) to a compute found to break
    the budget: nothing that low or lower is offered."""
    base_edp = search.edp(current)
    scored = []
    for op, layer, spec in search.moves():
        spec_cost = search.compute[spec]
        if (spec_cost >= search.compute[_current_spec(current, op, layer)]
                or spec_cost <= blocked.get((op, layer), -1.0)):
            continue
        saved = base_edp - search.edp(search.with_move(current, op, layer, spec))
        if saved > 0:
            scored.append((-saved / (_dropped(search, op, layer, spec) + 1e-3), -spec_cost,
                           op, layer, spec))
    steps = {}
    for entry in scored:
        if entry[2:4] not in steps or entry[1] < steps[entry[2:4]][1]:
            steps[entry[2:4]] = entry
    chain, choice, edp = [], current, base_edp
    for _, _, op, layer, spec in sorted(steps.values()):
        trial = search.with_move(choice, op, layer, spec)
        trial_edp = search.edp(trial)
        if trial_edp < edp:
            chain.append((trial, (op, layer, spec)))
            choice, edp = trial, trial_edp
    return chain


def _crossing(search: _Search, choices: list[Choice], near_edge: bool) -> int:
    """choices[0] keeps the budget; the index of the last choice before the first one
    found to break it (len - 1 when the last keeps it), by bisection. `near_edge`:
    choices[1] is tested first (next to the budget's edge the first step usually
    breaks it), else the last one is."""
    order = (1, len(choices) - 1) if near_edge else (len(choices) - 1, 1)
    lo, hi = 0, len(choices)
    for i in order:
        if lo < i < hi:
            if search.passes(choices[i]):
                lo = i
            else:
                hi = i
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if search.passes(choices[mid]):
            lo = mid
        else:
            hi = mid
    return lo


def _descend(search: _Search, current: Choice, evaluations: int | None) -> Choice:
    """Steps down the layer operands' ladders from `current` while the budget holds
    (module docstring), until nothing changes or `evaluations` are spent (then a
    choice not measured before counts as breaking the budget)."""
    if evaluations is not None:
        search = search._replace(stop_at=search.problem.evaluations + evaluations)
    rejected: dict[tuple[str, str], tuple[float, int]] = {}  # -> (compute that broke it, when)
    accepted, near_edge = 0, False
    while not search.spent:
        chain = _chain(search, current, {k: c for k, (c, _) in rejected.items()})
        if not chain:
            stale = [k for k, (_, when) in rejected.items() if when < accepted]
            if not stale:
                break
            for key in stale:  # rejected before later steps were taken: retry
                del rejected[key]
            continue
        lo = _crossing(search, [current] + [c for c, _ in chain], near_edge)
        if lo:
            current, accepted = chain[lo - 1][0], accepted + 1
        near_edge = lo < len(chain)
        if near_edge:
            op, layer, spec = chain[lo][1]  # the step that broke the budget
            swapped = None
            for rung in _rungs_from(search, current, op, layer, spec):
                swapped = _swap(search, current, op, layer, rung)
                if swapped is not None:
                    break
            if swapped is not None:
                current, accepted = swapped, accepted + 1
            else:
                rejected[op, layer] = (search.compute[spec], accepted)
    return current


def _rungs_from(search: _Search, current: Choice, op: str, layer: str, spec: str) -> list[str]:
    """`spec` and the rungs below it on the layer operand's ladder that save more EDP
    than it does, next rung first: a deeper step may pay for the eases a shallow one
    cannot (a rung whose EDP barely drops, as a two-term series on a memory-bound layer)."""
    specs = search.weight_specs if op == "weights" else search.activation_specs
    edp = search.edp(search.with_move(current, op, layer, spec))
    deeper = [s for s in specs if search.compute[s] < search.compute[spec]
              and search.edp(search.with_move(current, op, layer, s)) < edp]
    return [spec] + sorted(deeper, key=search.compute.get, reverse=True)


def _step_up(search: _Search, choice: Choice, op: str, layer: str, to_dense: bool) -> Choice:
    """`choice` with the layer operand one step up its ladder, or back to dense."""
    specs = search.weight_specs if op == "weights" else search.activation_specs
    now = search.compute[_current_spec(choice, op, layer)]
    higher = [s for s in specs if search.compute[s] > now]
    weights, acts = dict(choice.weights), dict(choice.activations)
    side = weights if op == "weights" else acts
    if higher and not to_dense:
        side[layer] = min(higher, key=search.compute.get)
    else:
        side.pop(layer, None)
    return Choice(weights, acts)


def _eases(search: _Search, choice: Choice, layer: str, may_switch: bool) -> list[Choice]:
    """`choice` with the layer's series one step up its ladder or back to dense, and
    (on a single-sparse-operand design, when `may_switch`) moved to the layer's other
    operand where that operand runs it: an activation series leaves the weights
    exact, a weight series the activations."""
    out = []
    for op, side in (("weights", choice.weights), ("activations", choice.activations)):
        if layer not in side:
            continue
        out += [_step_up(search, choice, op, layer, to_dense) for to_dense in (False, True)]
        other = "activations" if op == "weights" else "weights"
        if (may_switch and search.hw.sparse_operands < 2
                and (other, layer, side[layer]) in search.moves()):
            out.append(search.with_move(choice, other, layer, side[layer]))
    return out


def _swap(search: _Search, current: Choice, op: str, layer: str, spec: str) -> Choice | None:
    """The step (op, layer, spec) broke the budget from `current`: tries to pay for it
    by easing other layers (`_eases`), while the whole still runs below `current`'s
    EDP. First one layer eased, the `SWAP_PARTNERS` cheapest in EDP (the first that
    keeps the budget is taken); then several: the cheapest ease applied one after
    another (a layer may be eased again, its operand switched at most once), the
    shortest run that keeps the budget (the longest is tested first: when it
    breaks the budget nothing shorter is tried). None when nothing keeps it."""
    edp_now = search.edp(current)
    stepped = search.with_move(current, op, layer, spec)

    def eases(choice: Choice, switched: set) -> list[tuple[float, int, str, Choice]]:
        return sorted(((search.edp(t), i, l, t) for l in sorted(
            (set(choice.weights) | set(choice.activations)) - {layer})
            for i, t in enumerate(_eases(search, choice, l, l not in switched))),
            key=lambda e: e[:2])

    singles = {t.key(): (edp, t) for edp, _, _, t in eases(stepped, set())}
    for edp, trial in sorted(singles.values(), key=lambda e: e[0])[:SWAP_PARTNERS]:
        if edp < edp_now and search.passes(trial):
            return trial
    trades, switched, seen = [stepped], {layer}, {stepped.key()}
    while True:
        options = eases(trades[-1], switched)
        if not options or options[0][0] >= edp_now or options[0][3].key() in seen:
            break
        _, _, eased, trial = options[0]
        if (set(trial.weights) - set(trades[-1].weights)
                or set(trial.activations) - set(trades[-1].activations)):  # operand moved
            switched.add(eased)
        trades.append(trial)
        seen.add(trial.key())
    if len(trades) < 3 or not search.passes(trades[-1]):  # one ease was tried above
        return None
    lo, hi = 1, len(trades) - 1  # trades[lo] breaks the budget, trades[hi] keeps it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if search.passes(trades[mid]):
            hi = mid
        else:
            lo = mid
    return trades[hi]


def _ours(search: _Search) -> Choice:
    start = min((_network(search), _paper(search)), key=search.edp)
    return _descend(search, start, search.refine_evaluations)


def combinations(problem: Problem, hardware: "str | cost.Hardware", operand: str) -> int:
    """How many choices `exhaustive` would consider: the product over layers of the
    options each has (dense, each weight candidate, each activation candidate
    where the layer is a TASD-A layer and the operand allows it).

    Example:
      >>> combinations(problem, "ttc_vegeta_m8", "both") <= EXHAUSTIVE_LIMIT
    """
    return math.prod(len(o) for o in _options(_prepare_search(problem, hardware, 0.99, operand, 1)))


def _options(search: _Search) -> list[list[tuple[str, str]]]:
    """Per layer, the (operand, spec) it may take; ("weights", "dense") is dense."""
    out = []
    for layer in search.problem.layers:
        options = [("weights", "dense")]
        if search.uses_weights:
            options += [("weights", s) for s in search.weight_specs]
        if search.uses_activations and layer in search.problem.activation_layers:
            options += [("activations", s) for s in search.activation_specs]
        out.append(options)
    return out


def _exhaustive(search: _Search) -> Choice:
    options = _options(search)
    count = math.prod(len(o) for o in options)
    if count > EXHAUSTIVE_LIMIT:
        raise ValueError(
            f"mode='exhaustive' would evaluate up to {count} combinations ({len(options)} layers, "
            f"options per layer {[len(o) for o in options]}); the limit is {EXHAUSTIVE_LIMIT}: "
            "use mode='ours'")
    layers = list(search.problem.layers)
    choices = []
    for combo in itertools.product(*options):
        weights = {l: s for l, (op, s) in zip(layers, combo) if op == "weights" and s != "dense"}
        acts = {l: s for l, (op, s) in zip(layers, combo) if op == "activations"}
        choices.append(Choice(weights, acts))
    return _first_passing(search, choices)


_MODES = {"network": _network, "paper": _paper, "ours": _ours, "exhaustive": _exhaustive}


def _prepare_search(problem: Problem, hardware: "str | cost.Hardware", budget: float,
                    operand: str, batch: int) -> _Search:
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a tasder.Problem, got {type(problem).__name__}")
    if operand not in OPERANDS:
        raise ValueError(f"operand={operand!r} is not one of {OPERANDS}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0.0 < budget <= 1.0:
        raise ValueError(f"budget={budget!r} must lie in (0, 1] (the fraction of the model's "
                         "own metric to keep, e.g. 0.99)")
    hw = _hardware(hardware)
    problem.gemms(batch)  # checks the batch
    if operand == "activations" and not problem.activation_layers:
        raise ValueError("operand='activations' but the problem has no activation layer "
                         "(no GEMM layer's input comes from a ReLU, GELU or SiLU: see "
                         "problem.layer_inputs)")
    weights, acts = problem.candidates(hw)
    return _Search(problem, hw, metrics.floor(problem.baseline, budget), operand, batch,
                   weights, acts, _compute_shares(weights + acts + ("dense",)))


def _compute_shares(specs: Sequence[str]) -> dict[str, float]:
    """{spec: sum Ni / Mi}: each series parsed once, where a search starts."""
    return {spec: patterns.as_series(spec).compute_cost for spec in specs}


def search(problem: Problem, *, hardware: "str | cost.Hardware" = "ttc_vegeta_m8",
           budget: float = 0.99, mode: str = "ours", operand: str = "both",
           batch: int = 1, refine_evaluations: int | None = REFINE_EVALUATIONS) -> Result:
    """Chooses series for the problem's layers on `hardware` (module docstring).

    Args:
      problem: the prepared model (`Problem`).
      hardware: an accelerator name (`cost.hardware_names()`) or a `cost.Hardware`.
      budget: the fraction of the model's own metric to keep, in (0, 1].
      mode: "network", "paper", "ours" or "exhaustive".
      operand: "weights" (TASD-W), "activations" (TASD-A) or "both".
      batch: examples per forward pass the EDP is computed for (the paper's
        ResNet-50 layers are batch 1).
      refine_evaluations: `ours` only: metric evaluations it may spend stepping
        down from its starting points (`None`: until nothing changes).

    Returns:
      `Result`; `result.choice.weights` / `.activations` map layers to series.

    Raises:
      ValueError: an unknown mode, operand or accelerator, a budget outside
        (0, 1], a batch that is not an integer >= 1, activations asked of a
        problem without activation layers, or an exhaustive search over more
        than `EXHAUSTIVE_LIMIT` combinations.

    Example:
      >>> result = search(problem, hardware="ttc_vegeta_m8", budget=0.99, mode="ours")
      >>> result.choice.weights, result.metric, result.relative_edp
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {MODES}")
    if refine_evaluations is not None and (isinstance(refine_evaluations, bool) or not
                                           isinstance(refine_evaluations, int)
                                           or refine_evaluations < 0):
        raise ValueError(f"refine_evaluations={refine_evaluations!r} must be an integer >= 0 "
                         "or None (until nothing changes)")
    state = _prepare_search(problem, hardware, budget, operand, batch)._replace(
        refine_evaluations=refine_evaluations)
    start, evaluations = time.perf_counter(), problem.evaluations
    choice = _MODES[mode](state)
    metric = problem.metric(choice)
    if metric < state.floor:
        raise ValueError(f"the metric gave {metric} for a choice it passed at the floor "
                         f"{state.floor}: evaluate must be deterministic (no dropout, no "
                         "random sampling)")
    return Result(choice, metric, state.edp(choice), problem.baseline, float(budget),
                  state.hw.name, int(batch), mode, operand, time.perf_counter() - start,
                  problem.evaluations - evaluations,
                  problem.relative_layer_edp(choice, state.hw, batch))
