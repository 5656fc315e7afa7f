"""Linear evaluation / fine-tuning: frozen BatchNorm, best-epoch selection, metrics against scikit-learn."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader
from scipy.special import softmax
from scipy.stats import ks_2samp
from sklearn.metrics import f1_score, roc_auc_score

from monai_ilm.evaluation import (
    PAPER_TASKS,
    TASKS,
    DownstreamClassifier,
    FeatureBatches,
    downstream_network,
    downstream_rows,
    evaluate_downstream,
    fit_downstream,
    get_task,
    ks_rows,
    load_pretrained_encoder,
    output_ks,
    run_downstream,
)
from monai_ilm.networks import MoCo, resnet_encoder
from monai_ilm.results import validate
from tests.helpers import tiny_moco


def brightness_items(n: int, seed: int, n_findings: int = 0, offset: float = 0.3) -> list[dict]:
    """32 px images whose mean brightness (single-label) or channel brightness (multi-label) encodes the label."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        image = 0.5 * torch.rand(3, 32, 32, generator=g)
        if n_findings:
            label = torch.tensor([(i >> c) & 1 for c in range(n_findings)], dtype=torch.float32)
            image = image + offset * label[:, None, None]
        else:
            label = i % 2
            image = image + offset * label
        items.append({"image": image, "label": label, "id": f"s{seed}-{i}"})
    return items


def loader(items: list[dict], shuffle: bool = False, batch_size: int = 8) -> DataLoader:
    return DataLoader(items, batch_size=batch_size, shuffle=shuffle)


def tiny_encoder(seed: int = 0):
    torch.manual_seed(seed)
    return resnet_encoder("resnet18")


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------ frozen encoder
def test_linear_probe_leaves_encoder_and_batchnorm_statistics_unchanged():
    net = DownstreamClassifier(tiny_encoder(), num_classes=2, freeze_encoder=True)
    encoder_before = copy.deepcopy(net.encoder.state_dict())
    head_before = copy.deepcopy(net.head.state_dict())
    items = brightness_items(16, seed=1)
    fit_downstream(net, loader(items, shuffle=True), loader(items), "binary_auc", max_epochs=2, device="cpu", seed=0)
    assert states_equal(net.encoder.state_dict(), encoder_before)  # weights, running mean/var, batch counters
    assert not states_equal(net.head.state_dict(), head_before)
    assert all(not p.requires_grad for p in net.encoder.parameters())
    net.train()
    assert net.training and net.head.training and not net.encoder.training
    assert not any(m.training for m in net.encoder.modules())


def test_finetuning_changes_encoder_weights_and_batchnorm_statistics():
    net = DownstreamClassifier(tiny_encoder(), num_classes=2, freeze_encoder=False)
    before = copy.deepcopy(net.encoder.state_dict())
    items = brightness_items(16, seed=1)
    fit_downstream(net, loader(items, shuffle=True), loader(items), "binary_auc", max_epochs=1, device="cpu")
    after = net.encoder.state_dict()
    assert not torch.equal(after["net.conv1.weight"], before["net.conv1.weight"])
    assert not torch.equal(after["net.bn1.running_mean"], before["net.bn1.running_mean"])
    assert not torch.equal(after["net.layer4.1.bn2.running_var"], before["net.layer4.1.bn2.running_var"])


def test_paper_mode_frozen_encoder_updates_only_batchnorm_statistics():
    """freeze_bn=False reproduces method_spec D11: weights frozen, BN running statistics drift."""
    net = DownstreamClassifier(tiny_encoder(), num_classes=2, freeze_encoder=True, freeze_bn=False)
    before = copy.deepcopy(net.encoder.state_dict())
    items = brightness_items(16, seed=1)
    fit_downstream(net, loader(items), loader(items), "binary_auc", max_epochs=1, device="cpu")
    after = net.encoder.state_dict()
    assert torch.equal(after["net.conv1.weight"], before["net.conv1.weight"])
    assert not torch.equal(after["net.bn1.running_mean"], before["net.bn1.running_mean"])


def test_classifier_on_an_intermediate_block():
    net = DownstreamClassifier(tiny_encoder(), num_classes=3, freeze_encoder=True, block=2)
    assert net.head.in_features == 128
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="block"):
        DownstreamClassifier(tiny_encoder(), num_classes=2, block=5)


# --------------------------------------------------------------------------------------- model selection
class WeightSnapshots:
    """Test handler: a copy of the network weights after every validation epoch."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network, self.states = network, {}

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine) -> None:
        self.states[engine.state.epoch] = copy.deepcopy(self.network.state_dict())


def diverging_problem(seed: int = 0):
    """A head that starts perfect on validation, trained on *inverted* labels, so validation gets worse."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int, invert: bool):
        x = torch.randn(n, 2, generator=g)
        y = (x[:, 0] > 0).float()
        return x, (1 - y) if invert else y

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = split(64, True), split(32, False), split(40, False)
    head = torch.nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        head.bias.zero_()
    loaders = (
        FeatureBatches(x_tr, y_tr, 16, shuffle=True),
        FeatureBatches(x_va, y_va, 16),
        FeatureBatches(x_te, y_te, 16, ids=[f"t{i}" for i in range(40)]),
    )
    return head, loaders, (x_te, y_te)


def test_test_evaluation_uses_the_best_validation_weights(tmp_path):
    head, (train, val, test), (x_te, y_te) = diverging_problem()
    snapshots = WeightSnapshots(head)
    fit = fit_downstream(
        head,
        train,
        val,
        "binary_auc",
        max_epochs=4,
        lr=0.05,
        device="cpu",
        val_handlers=[snapshots],
        ckpt_dir=tmp_path,
    )
    assert len(fit.history) == 4 and fit.history[-1] < max(fit.history)
    assert fit.best_epoch == int(np.argmax(fit.history)) + 1 < 4
    assert fit.selected_epoch == fit.best_epoch
    assert states_equal(head.state_dict(), snapshots.states[fit.best_epoch])
    saved = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=True)
    assert states_equal(saved, snapshots.states[fit.best_epoch])

    result = evaluate_downstream(head, test, "binary_auc", device="cpu", n_resamples=0, id_key="id")

    def test_auc(state: dict) -> tuple[np.ndarray, float]:
        ref = torch.nn.Linear(2, 2)
        ref.load_state_dict(state)
        with torch.no_grad():
            logits = ref(x_te).numpy()
        return logits, roc_auc_score(y_te.numpy(), softmax(logits, axis=1)[:, 1])

    best_logits, best_auc = test_auc(snapshots.states[fit.best_epoch])
    _, last_auc = test_auc(snapshots.states[4])
    np.testing.assert_allclose(result.logits, best_logits, rtol=1e-6)
    assert result.value == pytest.approx(best_auc) and best_auc > last_auc
    assert result.ids == [f"t{i}" for i in range(40)]


def test_select_last_reproduces_the_reference():
    head, (train, val, _), _ = diverging_problem()
    snapshots = WeightSnapshots(head)
    fit = fit_downstream(
        head, train, val, "binary_auc", max_epochs=4, lr=0.05, device="cpu", val_handlers=[snapshots], select="last"
    )
    assert fit.selected_epoch == 4 and fit.best_epoch < 4
    assert states_equal(head.state_dict(), snapshots.states[4])


def test_fit_arguments_are_checked():
    head, (train, val, _), _ = diverging_problem()
    with pytest.raises(ValueError, match="select"):
        fit_downstream(head, train, val, "binary_auc", select="worst")
    with pytest.raises(ValueError, match="task"):
        fit_downstream(head, train, val, "segmentation")
    frozen = DownstreamClassifier(tiny_encoder(), 2, freeze_encoder=True)
    frozen.head.requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        fit_downstream(frozen, train, val, "binary_auc", max_epochs=1, device="cpu")


# ------------------------------------------------------------------------------------------------ metrics
@pytest.fixture(scope="module")
def random_classifier_outputs():
    """A random (untrained) classifier's test outputs for each task, on 24 images."""
    out = {}
    for task, n_findings, n_out in (("binary_auc", 0, 2), ("f1", 0, 2), ("multilabel", 3, 3)):
        torch.manual_seed(0)
        net = DownstreamClassifier(resnet_encoder("resnet18"), n_out)
        items = brightness_items(24, seed=3, n_findings=n_findings)
        out[task] = evaluate_downstream(net, loader(items), task, device="cpu", n_resamples=200, id_key="id")
    return out


def test_binary_auc_matches_sklearn(random_classifier_outputs):
    r = random_classifier_outputs["binary_auc"]
    assert r.value == pytest.approx(roc_auc_score(r.labels, softmax(r.logits, axis=1)[:, 1]))
    np.testing.assert_allclose(r.probabilities, softmax(r.logits, axis=1))
    paper = PAPER_TASKS["binary_auc"].test_metric(r.labels, r.logits)
    assert paper == pytest.approx(roc_auc_score(r.labels, r.logits[:, 1]))  # D12: the raw class-1 logit
    assert r.ci_low <= r.value <= r.ci_high and r.ci.n == 24 and r.metric == "auc"


def test_f1_matches_sklearn(random_classifier_outputs):
    r = random_classifier_outputs["f1"]
    assert r.value == pytest.approx(f1_score(r.labels, r.logits.argmax(1), average="macro"))
    micro = PAPER_TASKS["f1"].val_metric(r.labels, r.logits)  # D13: the reference selected on micro-F1
    assert micro == pytest.approx(f1_score(r.labels, r.logits.argmax(1), average="micro"))
    assert r.metric == "f1_macro"


def test_multilabel_mean_auc_matches_sklearn(random_classifier_outputs):
    r = random_classifier_outputs["multilabel"]
    per_class = [roc_auc_score(r.labels[:, c], r.logits[:, c]) for c in range(3)]
    np.testing.assert_allclose(r.per_class, per_class)
    assert r.value == pytest.approx(np.mean(per_class)) and r.metric == "mean_auc"
    np.testing.assert_allclose(r.probabilities, 1 / (1 + np.exp(-r.logits)))


def test_paper_standard_error_interval_is_narrower(random_classifier_outputs):
    from monai_ilm.evaluation import Predictions, score_predictions

    r = random_classifier_outputs["binary_auc"]
    preds = Predictions(r.logits, r.labels, r.ids)
    se = score_predictions(preds, "binary_auc", n_resamples=200, ci_method="standard_error")
    assert se.ci.full_value == r.value and (se.ci_high - se.ci_low) < (r.ci_high - r.ci_low)
    assert se.value == se.ci.bootstrap_mean  # the paper's point estimate, the centre of its interval
    with pytest.raises(ValueError, match="ci_method"):
        score_predictions(preds, "binary_auc", ci_method="bca")


def test_task_presets():
    assert set(TASKS) == set(PAPER_TASKS) == {"multilabel", "binary_auc", "f1"}
    assert get_task("f1") is TASKS["f1"] and get_task("f1", paper_faithful=True) is PAPER_TASKS["f1"]
    assert get_task(TASKS["multilabel"]) is TASKS["multilabel"]


# ------------------------------------------------------------------------------------- end to end + rows
def test_run_downstream_is_reproducible_and_writes_valid_rows():
    items_tr, items_va, items_te = brightness_items(16, 1), brightness_items(12, 2), brightness_items(12, 3)

    def run():
        net = downstream_network(None, 2, freeze_encoder=True, encoder_name="resnet18", seed=0)
        return run_downstream(
            net,
            loader(items_tr, shuffle=True),
            loader(items_va),
            loader(items_te),
            "f1",
            max_epochs=2,
            device="cpu",
            seed=0,
            n_resamples=100,
            id_key="id",
        )

    a, b = run(), run()
    np.testing.assert_array_equal(a.logits, b.logits)
    assert a.fit.history == b.fit.history and a.ci == b.ci
    assert a.ids == [f"s3-{i}" for i in range(12)]
    rows = downstream_rows(a, "linear", "idc", "supervised", 1.0, 0, "run-1", config_hash="abc")
    table = validate(pd.DataFrame(rows))
    assert len(table) == 1 and table.loc[0, "metric"] == "f1_macro" and table.loc[0, "n"] == 12


def test_amp_applies_to_training_only_and_test_predictions_stay_float32(monkeypatch):
    from monai.engines import SupervisedTrainer

    import monai_ilm.evaluation.downstream as downstream

    seen = []
    train, test = SupervisedTrainer.run, downstream.predict
    monkeypatch.setattr(SupervisedTrainer, "run", lambda self: seen.append(("fit", self.amp)) or train(self))
    monkeypatch.setattr(
        downstream, "predict", lambda *a, **k: seen.append(("test", k.get("amp", False))) or test(*a, **k)
    )
    items = brightness_items(8, 1)
    net = downstream_network(None, 2, freeze_encoder=True, encoder_name="resnet18", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # amp on a machine without CUDA: MONAI's autocast and scaler disable themselves
        result = run_downstream(
            net, loader(items), loader(items), loader(items), "f1", max_epochs=1, device="cpu", n_resamples=0, amp=True
        )
    assert seen == [("fit", True), ("test", False)]
    assert result.logits.dtype == np.float64 and result.fit.selected_epoch == 1


def test_per_finding_rows(random_classifier_outputs):
    r = random_classifier_outputs["multilabel"]
    rows = downstream_rows(
        r, "finetune", "nih", "mse", 0.01, 0, "run-2", per_class_rows=True, class_names=["A", "B", "C"]
    )
    table = validate(pd.DataFrame(rows))
    assert list(table["metric"]) == ["mean_auc", "auc_A", "auc_B", "auc_C"]
    np.testing.assert_allclose(table["value"].iloc[1:], r.per_class)


def test_ks_rows_match_scipy(random_classifier_outputs):
    a = random_classifier_outputs["binary_auc"]
    b = copy.copy(a)
    b.probabilities = softmax(2.0 * a.logits + 0.3, axis=1)
    ks = output_ks(a, b)
    assert ks.classes == (1,)
    expected = ks_2samp(a.probabilities[:, 1], b.probabilities[:, 1]).statistic
    assert ks.mean_statistic == pytest.approx(expected)
    rows = ks_rows(a, b, "dr", "moco", 0.01, 0, "run-3")
    assert validate(pd.DataFrame(rows)).loc[0, "protocol"] == "ks"
    c = copy.copy(a)
    c.ids = [f"other{i}" for i in range(a.n)]
    with pytest.raises(ValueError, match="same test samples"):
        output_ks(a, c)


# ----------------------------------------------------------------------------------- pretrained weights
@pytest.mark.parametrize("form", ["model", "network", "resumable"])
def test_load_pretrained_encoder_round_trip(tmp_path, form):
    moco = tiny_moco(seed=5)
    state = moco.state_dict()
    obj = {
        "model": state,
        "network": {"network": state},
        "resumable": {"network": state, "optimizer": torch.optim.SGD(moco.parameters(), lr=0.1).state_dict()},
    }[form]
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    encoder = load_pretrained_encoder(path, tiny_encoder(seed=9))
    assert states_equal(encoder.state_dict(), moco.encoder_q.state_dict())


def test_load_pretrained_encoder_none_keeps_random_init():
    encoder = tiny_encoder(seed=9)
    before = copy.deepcopy(encoder.state_dict())
    assert states_equal(load_pretrained_encoder(None, encoder).state_dict(), before)


def test_load_pretrained_encoder_errors_name_the_file(tmp_path):
    torch.manual_seed(0)
    grey = MoCo(resnet_encoder("resnet18", in_channels=1), embedding_dim=16, queue_size=32)
    path = tmp_path / "grey_moco.pt"
    torch.save(grey.state_dict(), path)
    with pytest.raises(ValueError, match=r"grey_moco\.pt.*conv1\.weight"):
        load_pretrained_encoder(path, tiny_encoder())
    deeper = MoCo(resnet_encoder("resnet34"), embedding_dim=16, queue_size=32)
    torch.save(deeper.state_dict(), path)
    with pytest.raises(ValueError, match=r"unexpected keys: net\.layer1\.2"):
        load_pretrained_encoder(path, tiny_encoder())
    other = tmp_path / "not_moco.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match=r"not_moco\.pt.*encoder_q"):
        load_pretrained_encoder(other, tiny_encoder())
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_pretrained_encoder(tmp_path / "missing.pt", tiny_encoder())


def test_fine_tuned_encoder_reloads_from_the_saved_classifier(tmp_path):
    net = DownstreamClassifier(tiny_encoder(), 2)
    items = brightness_items(8, seed=1)
    fit_downstream(net, loader(items), loader(items), "binary_auc", max_epochs=1, device="cpu", ckpt_dir=tmp_path)
    encoder = load_pretrained_encoder(tmp_path / "model.pt", tiny_encoder(seed=3), prefix="encoder.")
    assert states_equal(encoder.state_dict(), net.encoder.state_dict())
