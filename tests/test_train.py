"""The training guarantees of asbsr.train: the stage-1 objective learns and keeps SimSiam's
stop-gradient, interrupted runs resume bit for bit, finished checkpoints are reused and changed
configs are not, stage 2 leaves E and M untouched (weights *and* BatchNorm statistics), the cycle
term is in the loss exactly when its weight is positive, and a seed fixes a run.

Everything runs on tiny models (E width 16, EDSR 1x8, LTE width 16) and 96x96 crops of a shipped
photo passed in memory, a few steps per run.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from asbsr.checkpoint import checkpoint_path
from asbsr.config import make_config
from asbsr.data import image_paths, load_image, random_crop
from asbsr.losses import kernel_loss, simsiam_loss
from asbsr.models import build_sr_model
from asbsr.sampling import sample_pairs
from asbsr.train import Stage1Result, build_stage1, train_stage1, train_stage2

TINY = {
    "degradation.kernel_sizes": (7, 9, 11),  # a 16-pixel LR patch at scale 1 must hold the kernel
    "encoder.dim": 16,
    "stage1.steps": 4, "stage1.batch_size": 4, "stage1.patch_size": 16, "stage1.checkpoint_every": 10,
    "model.n_resblocks": 1, "model.n_feats": 8, "model.width": 16, "model.mlp": (16,),
    # The cycle blurs the scale-1 output with the 21x21 k̂_l, so the LR patch must be >= 21.
    "stage2.steps": 4, "stage2.batch_size": 2, "stage2.patch_size": 24, "stage2.queries": 64,
    "stage2.checkpoint_every": 10,
}


def tiny(**overrides):
    return make_config("smoke", {**TINY, **overrides})


def quiet(function, *args, **kwargs):
    return function(*args, device="cpu", progress=False, **kwargs)




@pytest.fixture(scope="module")
def images():
    photo = load_image(image_paths("train")[0])
    generator = torch.Generator().manual_seed(0)
    return [random_crop(photo, 96, generator).clone() for _ in range(3)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, images):
    """An uninterrupted stage-1 run of the tiny config."""
    return quiet(train_stage1, tiny(), tmp_path_factory.mktemp("stage1"), images=images)


def fresh(stage1: Stage1Result) -> Stage1Result:
    """A private copy, so that a stage-2 test cannot change the shared stage-1 result."""
    return copy.deepcopy(stage1)


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def without_time(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "wall_seconds"}


# ---------------------------------------------------------------- stage 1

def test_stage1_steps_lower_the_loss_on_a_fixed_batch(images):
    config = tiny()
    torch.manual_seed(0)
    _, simsiam, estimator = build_stage1(config)
    batch = sample_pairs(images, 8, 16, config.degradation, torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(list(simsiam.parameters()) + list(estimator.parameters()), lr=config.stage1.lr)
    history = []
    for _ in range(20):
        p1, p2, z1, z2, r1, _ = simsiam(batch.lr1, batch.lr2)
        l_cl = simsiam_loss(p1, p2, z1, z2)
        l_k = kernel_loss(estimator(r1), batch.k_l)
        optimizer.zero_grad()
        (l_cl + l_k).backward()
        optimizer.step()
        history.append((l_cl.item(), l_k.item()))
    (cl_first, k_first), (cl_last, k_last) = history[0], history[-1]
    assert cl_last < cl_first - 0.1  # the two views of each pair move towards one direction
    assert k_last < k_first  # M fits the Eq. 4 kernels of this batch better


def test_stage1_objective_stop_gradient_and_what_each_loss_trains(images):
    config = tiny()
    torch.manual_seed(0)
    encoder, simsiam, estimator = build_stage1(config)
    batch = sample_pairs(images, 4, 16, config.degradation, torch.Generator().manual_seed(2))
    p1, p2, z1, z2, r1, _ = simsiam(batch.lr1, batch.lr2)
    params = [p for p in simsiam.parameters()]
    l_cl = simsiam_loss(p1, p2, z1, z2)
    # Stop-gradient: replacing the targets z by constants changes no gradient.
    grads = torch.autograd.grad(l_cl, params, retain_graph=True, allow_unused=True)
    constant = torch.autograd.grad(simsiam_loss(p1, p2, z1.detach().clone(), z2.detach().clone()), params,
                                   retain_graph=True, allow_unused=True)
    for g, c in zip(grads, constant):
        assert (g is None and c is None) or torch.equal(g, c)
    named = dict(zip([n for n, _ in simsiam.named_parameters()], grads))
    for part in ("encoder.body.0.0.weight", "projector.0.weight", "predictor.0.weight"):
        assert named[part] is not None and named[part].abs().sum() > 0, part
    # L_k reaches E through the undetached representation r1 (the paper trains E with L_cl + L_k).
    (k_grad,) = torch.autograd.grad(kernel_loss(estimator(r1), batch.k_l), [encoder.body[0][0].weight])
    assert k_grad.abs().sum() > 0


def test_stage1_trains_every_part_including_the_projector(reference):
    torch.manual_seed(reference.config.seed)  # train_stage1 builds its models after this seed
    _, initial_simsiam, initial_estimator = build_stage1(reference.config)
    for name, module, initial in (("simsiam", reference.simsiam, initial_simsiam),
                                  ("estimator", reference.estimator, initial_estimator)):
        for (key, value), (_, start) in zip(module.named_parameters(), initial.named_parameters()):
            assert not torch.equal(value, start), f"{name}.{key} was not trained"


def test_stage1_resume_after_interruption_is_bit_identical(tmp_path, images, reference):
    config = tiny()
    first = quiet(train_stage1, config, tmp_path, images=images, stop_after=2)
    assert "steps 0->2 of 4" in first.status
    saved = torch.load(first.path, weights_only=True)  # plain tensors and containers only
    assert saved["step"] == 2 and saved["steps"] == 4 and len(saved["history"]["loss"]) == 2
    second = quiet(train_stage1, config, tmp_path, images=images)
    assert second.status.startswith("resumed") and "2->4" in second.status
    assert_same_state(second.simsiam, reference.simsiam)
    assert_same_state(second.estimator, reference.estimator)
    assert without_time(second.history) == without_time(reference.history)
    assert torch.load(second.path, weights_only=True)["step"] == 4


def test_stage1_same_seed_same_run_other_seed_other_run(tmp_path, images, reference):
    again = quiet(train_stage1, tiny(), tmp_path / "again", images=images)
    assert again.status.startswith("trained")
    assert without_time(again.history) == without_time(reference.history)
    assert_same_state(again.simsiam, reference.simsiam)
    other = quiet(train_stage1, tiny(seed=1), tmp_path / "other", images=images)
    assert other.history["loss"] != reference.history["loss"]


def test_finished_checkpoint_is_reused_and_a_changed_hyperparameter_is_not(images, reference):
    folder = reference.path.parent
    stamp = reference.path.stat().st_mtime_ns
    again = quiet(train_stage1, tiny(), folder, images=images)
    assert again.status.startswith("loaded") and again.path == reference.path
    assert reference.path.stat().st_mtime_ns == stamp  # nothing was trained or written
    assert_same_state(again.simsiam, reference.simsiam)
    assert without_time(again.history) == without_time(reference.history)
    # Stage-2 settings do not touch the stage-1 key; stage-1 settings do.
    assert checkpoint_path(folder, tiny(**{"model.width": 32}), 1) == reference.path
    assert checkpoint_path(folder, tiny(**{"model.width": 32}), 2) != checkpoint_path(folder, tiny(), 2)
    changed = quiet(train_stage1, tiny(**{"stage1.lr": 2e-3}), folder, images=images)
    assert changed.status.startswith("trained") and changed.path != reference.path
    assert changed.path.exists() and reference.path.exists()


# ---------------------------------------------------------------- stage 2

def frozen_state(stage1: Stage1Result) -> dict:
    return {f"{part}.{k}": v.clone() for part, module in (("E", stage1.encoder), ("M", stage1.estimator))
            for k, v in module.state_dict().items()}


def test_stage2_leaves_E_and_M_untouched_and_in_eval_mode(tmp_path, images, reference):
    stage1 = fresh(reference)
    before = frozen_state(stage1)
    assert any("running_mean" in k for k in before)  # E has BatchNorm statistics to protect
    result = quiet(train_stage2, tiny(), stage1, tmp_path, images=images)
    after = frozen_state(stage1)
    for key in before:  # weights and BatchNorm running statistics alike
        assert torch.equal(before[key], after[key]), key
    model = result.model
    for part in (model.encoder, model.estimator):
        assert all(not p.requires_grad and p.grad is None for p in part.parameters())
    model.train()
    assert model.sr.training and not model.encoder.training and not model.estimator.training
    assert all(not m.training for m in model.encoder.modules())
    torch.manual_seed(tiny().seed + 1)  # train_stage2 builds the SR module right after this seed
    initial = build_sr_model(tiny().model, rep_dim=tiny().encoder.dim)
    for (name, trained), start in zip(model.sr.named_parameters(), initial.parameters()):
        assert trained.requires_grad and not torch.equal(trained, start), f"sr.{name} was not trained"


def test_stage2_resume_after_interruption_is_bit_identical(tmp_path, images, reference):
    config = tiny()
    whole = quiet(train_stage2, config, fresh(reference), tmp_path / "whole", images=images)
    first = quiet(train_stage2, config, fresh(reference), tmp_path / "parts", images=images, stop_after=2)
    assert "steps 0->2 of 4" in first.status
    saved = torch.load(first.path, weights_only=True)
    assert saved["step"] == 2 and saved["parent"] == reference.path.stem.removeprefix("stage1-")
    second = quiet(train_stage2, config, fresh(reference), tmp_path / "parts", images=images)
    assert second.status.startswith("resumed")
    assert_same_state(second.model.sr, whole.model.sr)
    assert without_time(second.history) == without_time(whole.history)
    loaded = quiet(train_stage2, config, fresh(reference), tmp_path / "whole", images=images)
    assert loaded.status.startswith("loaded")
    assert_same_state(loaded.model.sr, whole.model.sr)
    other = quiet(train_stage2, tiny(seed=1), fresh(reference), tmp_path / "other", images=images)
    assert other.history["super"] != whole.history["super"]


def test_cycle_term_is_in_the_loss_exactly_when_its_weight_is_positive(tmp_path, images, reference):
    on = quiet(train_stage2, tiny(**{"stage2.cycle_weight": 0.1}), fresh(reference), tmp_path / "on",
               images=images).history
    assert on["cycle_step"] == on["step"] == [1, 2, 3, 4]
    for loss, sup, cyc in zip(on["loss"], on["super"], on["cycle"]):
        assert math.isclose(loss, sup + 0.1 * cyc, rel_tol=1e-5)
        assert cyc > 0
    off = quiet(train_stage2, tiny(**{"stage2.cycle_weight": 0.0, "stage2.steps": 10}), fresh(reference),
                tmp_path / "off", images=images).history
    assert off["loss"] == off["super"]  # exactly: no cycle term
    assert off["cycle_step"] == [10]  # measured only, every 10th step
    # Same initial weights and first batch: the first L_super agrees, then the paths part.
    assert math.isclose(on["super"][0], off["super"][0], rel_tol=1e-5)
    assert not math.isclose(on["super"][3], off["super"][3], rel_tol=1e-7)


def test_without_modulation_stage2_does_not_depend_on_E(tmp_path, images, reference):
    config = tiny()
    torch.manual_seed(123)
    encoder, simsiam, estimator = build_stage1(config)
    untrained = Stage1Result(config, encoder, simsiam, estimator, {}, reference.path, "untrained")
    results = {}
    for modulation in (False, True):
        overrides = {"model.modulation": modulation, "stage2.cycle_weight": 0.0}
        results[modulation] = [quiet(train_stage2, tiny(**overrides), stage1, tmp_path / f"{modulation}-{i}",
                                     images=images).model.sr
                               for i, stage1 in enumerate((fresh(reference), untrained))]
    assert_same_state(*results[False])  # plain EDSR + LTE: E's output is never used
    trained_sr, untrained_sr = results[True]
    assert any(not torch.equal(a, b) for a, b in zip(trained_sr.parameters(), untrained_sr.parameters()))


def test_a_monitor_records_curves_without_changing_the_training(tmp_path, images, reference):
    config = tiny(**{"stage2.checkpoint_every": 2})
    seen = []

    def monitor(model):
        seen.append(model.training)
        return {"value": float(len(seen))}

    plain = quiet(train_stage2, config, fresh(reference), tmp_path / "plain", images=images)
    watched = quiet(train_stage2, config, fresh(reference), tmp_path / "watched", images=images,
                    monitor=monitor)
    assert_same_state(watched.model.sr, plain.model.sr)  # measuring draws nothing from training
    assert watched.history["monitor"] == [{"step": 2, "value": 1.0}, {"step": 4, "value": 2.0}]
    assert seen == [False, False]  # measured in eval mode
    assert "monitor" not in plain.history
    # interrupted and resumed, the curve continues where the checkpoint left it
    quiet(train_stage2, config, fresh(reference), tmp_path / "parts", images=images, monitor=monitor,
          stop_after=2)
    resumed = quiet(train_stage2, config, fresh(reference), tmp_path / "parts", images=images,
                    monitor=monitor)
    assert [point["step"] for point in resumed.history["monitor"]] == [2, 4]
    assert_same_state(resumed.model.sr, plain.model.sr)


def test_psnr_monitor_measures_train_and_validation_crops_above_nothing(tmp_path, reference, images):
    from asbsr.lab.zoo_train import CURVE_CROP, curve_samples, psnr_monitor

    config = tiny(**{"data.val": "classic5"})
    samples = curve_samples("classic5", config)
    assert len(samples) == 5 and all(max(s.hr.shape[-2:]) <= CURVE_CROP for s in samples)
    again = curve_samples("classic5", config)
    assert all(torch.equal(a.lr, b.lr) for a, b in zip(samples, again))  # seeded per photo
    monitor = psnr_monitor(config)
    bicubic = monitor.bicubic()
    assert set(bicubic) == {"train_psnr", "val_psnr"} and 15 < bicubic["val_psnr"] < 45
    model = quiet(train_stage2, config, fresh(reference), tmp_path / "m", images=images).model
    with torch.no_grad():
        measured = monitor(model.eval())
    assert set(measured) == {"train_psnr", "val_psnr"}
    assert all(math.isfinite(v) for v in measured.values())
