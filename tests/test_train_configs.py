"""The paper recipes' configs (VGG16 / CIFAR-10, BERT): shapes, one step, the token data path."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import tw_bert
from configs import tw_digits
from configs import tw_sweep_digits
from configs import tw_vgg16_cifar10
from experiments import checks
from experiments import sweep
from experiments import train as train_experiment
from experiments import train_config
from tasd_jax import pruning
from tasd_jax import training
from tasd_jax import tree_paths


def _abstract_params(config, num_classes, example):
    model = train_config.make_model(config, num_classes)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), **example, train=False))
    return variables["params"]


def test_vgg16_recipe_prunes_the_13_convs_in_the_papers_stages():
    config = tw_vgg16_cifar10.get_config()
    params = _abstract_params(config, 10, {"images": jnp.zeros((1, 32, 32, 3))})
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    assert 14.7e6 < count < 15.1e6  # VGG16-BN, CIFAR head
    pruner = train_config.make_pruner(config)
    targets = pruner.targets(params)
    assert sorted(t.path for t in targets) == sorted(f"conv_{i}/kernel" for i in range(13))
    assert all(t.pattern.spec() == "tw(sparsity=0.75,g=128)" for t in targets)
    assert pruner.schedule.sparsities == (0.25, 0.40, 0.50, 0.60, 0.65, 0.70, 0.75)
    assert pruner.schedule.steps == tuple(range(0, 35000, 5000))
    assert train_config.resolve_num_steps(config) == 35000 and pruner.global_threshold and pruner.score == "magnitude"
    dense = tw_vgg16_cifar10.get_config("dense")
    assert train_config.make_pruner(dense) is None and dense.augment
    with pytest.raises(ValueError, match="variant 'huge'"):
        tw_vgg16_cifar10.get_config("huge")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_vgg16_recipe_one_train_step_on_random_images():
    config = tw_vgg16_cifar10.get_config()
    tx = train_config.make_optimizer(config, train_config.resolve_num_steps(config))
    pruner = train_config.make_pruner(config)
    batch = {
        "image": jax.random.uniform(jax.random.key(0), (2, 32, 32, 3)),
        "label": jnp.array([3, 7], jnp.int32),
    }
    model = train_config.make_model(config, 10)
    state = training.create_train_state(jax.random.PRNGKey(0), model, batch, pruning.prune(tx, pruner))
    new, metrics = jax.jit(training.train_step)(state, batch)
    assert np.isfinite(float(metrics["loss"]))
    # Jitted, as the training loop runs it (eagerly, each of the 13 masks' checks
    # would compile op by op).
    m = jax.jit(functools.partial(pruning.sparsity_metrics, pruner))(new.params, new.opt_state)
    # Step 0 is the first stage: 25% of the conv weights, tile-wise, globally.
    np.testing.assert_allclose(float(m["sparsity"]), 0.25, atol=0.01)
    assert bool(m["pattern_valid"])
    assert new.batch_stats["bn_0"]["mean"].shape == (64,)


def test_bert_recipe_selects_the_72_encoder_gemms_with_taylor_scores():
    config = tw_bert.get_config()
    params = _abstract_params(config, 2, {"input_ids": jnp.zeros((1, 128), jnp.int32)})
    pruner = train_config.make_pruner(config)
    targets = pruner.targets(params)
    shapes = sorted({tuple(tree_paths.flatten(params)[t.path].shape) for t in targets})
    assert len(targets) == 72 and shapes == [(768, 768), (768, 3072), (3072, 768)]
    assert pruner.score == "taylor_squared" and pruner.taylor_steps == 100
    assert pruner.schedule.sparsities == (0.25, 0.35, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75)
    assert pruner.schedule.steps[:2] == (100, 100 + 67349 // 32)
    assert config.batch_size == 32 and config.learning_rate == 2e-5


def _tiny_bert(config):
    config.model_kwargs = {"num_layers": 2, "hidden": 32, "num_heads": 2, "mlp_dim": 64,
                           "vocab_size": 50, "max_len": 16, "dropout_rate": 0.1}
    # Target 50%: the paper's stages 25, 35, 50%, so 3 stages of 3 steps fit in 9 steps.
    config.pruning.rules = ((tw_bert.ENCODER_KERNELS, "tw(sparsity=0.5,g=8)"),)
    config.pruning.steps_per_stage = 3
    config.pruning.mask_delay = 2
    config.pruning.taylor_steps = 2
    return config


class TinyTokens(tfds.core.GeneratorBasedBuilder):
    """Pre-tokenized 2-class sequences of length 16 with the features tw_bert expects."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "input_ids": tfds.features.Tensor(shape=(16,), dtype=np.int32),
                "attention_mask": tfds.features.Tensor(shape=(16,), dtype=np.int32),
                "label": tfds.features.ClassLabel(num_classes=2),
            }),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 48), "validation": self._generate_examples(1, 13)}

    def _generate_examples(self, seed, n):
        rng = np.random.default_rng(seed)
        for i in range(n):
            length = int(rng.integers(4, 17))
            ids = np.where(np.arange(16) < length, rng.integers(1, 50, 16), 0).astype(np.int32)
            mask = (np.arange(16) < length).astype(np.int32)
            yield i, {"input_ids": ids, "attention_mask": mask, "label": int(ids[1] % 2)}


def test_bert_recipe_runs_end_to_end_on_a_prepared_token_data_set(tmp_path):
    """A tiny BERT with the recipe's rules, Taylor scores and stages, on random tokens."""
    data_dir = str(tmp_path / "tfds")
    TinyTokens(data_dir=data_dir, file_format="array_record").download_and_prepare()
    config = _tiny_bert(tw_bert.get_config())
    config.dataset, config.data_dir = "tiny_tokens", data_dir
    config.batch_size, config.eval_batch_size = 8, 4  # 13 validation examples: last batch padded
    config.num_steps, config.log_every, config.eval_every, config.checkpoint_every = 9, 3, 9, 3
    results = train_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    final = results["final"]
    # Mask updates at steps 2, 5, 8 (mask_delay 2, 3 steps per stage): stages 25, 35, 50%.
    assert final["pattern_valid"] and abs(final["sparsity"] - 0.5) < 0.01
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert rows[-1]["step"] == 9 and rows[-1]["test_accuracy"] == final["test_accuracy"]
    # 13 examples: accuracy is a multiple of 1/13, so the padding rows were not counted.
    assert abs(final["test_accuracy"] * 13 - round(final["test_accuracy"] * 13)) < 1e-6


def test_sweep_config_variants_parse_and_cover_the_papers_patterns():
    config = tw_sweep_digits.get_config()
    labels = [label for label, _ in config.variants]
    assert labels == ["EW", "VW", "BW", "TW", "TEW"]
    specs = [sweep.variant_spec(t, s) for _, t in config.variants for s in config.sparsities]
    assert len(specs) == 15 and "tw(sparsity=0.9,g=32)" in specs
    assert tw_digits.get_config().pruning.rules[0][1] == "tw(sparsity=0.75,g=32)"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sweep_runs_dense_once_then_each_variant_and_writes_the_table(tmp_path):
    import csv

    config = tw_sweep_digits.get_config()
    config.base.data_dir = str(tmp_path / "tfds")
    config.base.pruning.end, config.base.pruning.frequency = 10, 5
    config.base.log_every = config.base.eval_every = config.base.checkpoint_every = 10
    config.dense_steps, config.finetune_steps = 20, 20
    config.sparsities = (0.75,)
    config.variants = (("EW", "ew(sparsity={sparsity})"), ("TW", "tw(sparsity={sparsity},g=32)"))
    workdir = tmp_path / "sweep"
    results = sweep.sweep(config, str(workdir))

    with open(workdir / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["pattern"], r["spec"]) for r in rows] == [
        ("EW", "ew(sparsity=0.75)"), ("TW", "tw(sparsity=0.75,g=32)")]
    for row, run in zip(rows, ("ew_0.75", "tw_0.75")):
        final = json.load(open(workdir / run / "results.json"))["final"]
        assert float(row["test_accuracy"]) == final["test_accuracy"]
        assert abs(float(row["sparsity"]) - 0.75) < 0.01 and row["pattern_valid"] == "True"
        # Each variant starts from the dense run's exported weights.
        assert json.load(open(workdir / run / "results.json"))["config"]["init_from"].endswith(
            "dense/export")
    dense = json.load(open(workdir / "dense" / "results.json"))["final"]
    assert results["dense_test_accuracy"] == dense["test_accuracy"] and dense["sparsity"] == 0.0
    from PIL import Image

    with Image.open(workdir / "sweep.png") as image:
        assert image.format == "PNG" and len(set(image.convert("L").getdata())) > 2

    config.sparsities = (0.5, 1.5)
    with pytest.raises(ValueError, match="sparsity=1.5"):  # every spec is checked before any run
        sweep.sweep(config, str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


def test_staged_run_without_num_steps_decays_its_lr_over_the_derived_budget(tmp_path):
    # num_steps=None asks for the budget of the staged schedule; a decaying learning
    # rate must decay over that budget, not fail on the None.
    config = tw_digits.get_config()
    config.lr_schedule, config.num_steps, config.weight_decay = "linear", None, 0.0
    config.pruning.schedule, config.pruning.stages, config.pruning.steps_per_stage = "staged", "0.5,0.75", 100
    plan = checks.check_run(config, str(tmp_path / "run"), num_devices=1)
    assert plan.num_steps == config.pruning.begin + 2 * 100
    params = {"w": jnp.ones(3)}
    # Momentum's first update is -lr(0) * grad: the schedule starts at the configured rate.
    inner = train_config.make_optimizer(config, plan.num_steps)
    updates, _ = inner.update({"w": jnp.ones(3)}, inner.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), -config.learning_rate, rtol=1e-6)
