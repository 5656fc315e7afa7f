"""The experiment runner: plan, run, skip what is done, print commands."""

from __future__ import annotations

import pytest

from monai_ilm.cli import bundles_root, main
from monai_ilm.data.synthetic import make_nih_sample
from monai_ilm.experiment import plan_cells, run_experiment
from monai_ilm.results import read_results
from monai_ilm.results.tables import paper_tables


def test_plan_respects_dependencies():
    cells = plan_cells(["moco", "mse"], [0.01, 0.06], [0, 1])
    order = [(c.protocol, c.method, c.seed, c.label_fraction) for c in cells]
    assert order[:4] == [("pretrain", "moco", 0, 1.0), ("pretrain", "mse", 0, 1.0), ("pretrain", "moco", 1, 1.0),
                         ("pretrain", "mse", 1, 1.0)]  # fmt: skip
    for protocol, method, seed, fraction in order:
        if protocol in ("feature_reuse", "ks"):
            needed = [("finetune", method, seed, fraction)] + ([("finetune", method, seed, 1.0)] if protocol == "ks" else [])
            assert all(order.index(n) < order.index((protocol, method, seed, fraction)) for n in needed)
    # per seed: 3 fractions x (2 methods + supervised) finetune, 2 x (linear, probe), 2 x 2 feature reuse, 2 x 2 ks
    assert len(cells) == 4 + 2 * (9 + 4 + 4 + 4)


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        plan_cells(["simclr"], [0.1], [0])
    with pytest.raises(ValueError):
        plan_cells(["mse"], [1.5], [0])


def test_print_commands(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    main(["experiment", "--bundle", "nih_chestxray_ilm", "--dataset_dir", str(data), "--output_dir", str(tmp_path / "out"),
          "--methods", "mse", "--fractions", "0.01", "--print_commands", "--quick"])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(plan_cells(["mse"], [0.01], [0]))
    assert all("-m monai.bundle run --config_file" in line for line in lines)
    assert "finetune.json" in lines[1] and "--protocol finetune" in lines[1] and "--label_fraction 1.0" in lines[1]
    assert not (tmp_path / "out").exists()


def test_quick_experiment_fills_the_four_tables_and_resumes(tmp_path):
    data = tmp_path / "nih"
    make_nih_sample(data, n_patients=40, image_size=64, seed=0)
    bundle = bundles_root() / "nih_chestxray_ilm"
    ran = run_experiment(bundle, data, tmp_path / "out", ["mse"], [0.06], [0], quick=True)
    assert len(ran) == len(plan_cells(["mse"], [0.06], [0]))
    results = read_results(tmp_path / "out" / "results")
    assert set(results["protocol"]) == {"linear", "finetune", "probe", "feature_reuse", "ks"}
    assert set(results["method"]) == {"mse", "supervised"}
    tables = paper_tables(results)
    assert set(tables) == {"linear", "finetune", "feature_reuse", "probe"}
    assert tables["probe"].value.shape == (1, 4)  # blocks 1-4
    assert run_experiment(bundle, data, tmp_path / "out", ["mse"], [0.06], [0], quick=True) == []  # all done
