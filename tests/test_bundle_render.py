"""The bundle renderer: placeholders, its errors, atomic folders and ``render-bundles --check``."""

from __future__ import annotations

import json

import pytest

from monai_ilm.bundle_render import TEMPLATE_DIR, bundle_values, check_bundles, render_all, render_files
from monai_ilm.cli import main
from tests.bundles.conftest import BUNDLES_DIR


def write_template(root, files: dict[str, str]):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_whole_placeholder_keeps_the_value_type_and_a_partial_one_its_text(tmp_path):
    template = write_template(
        tmp_path / "recipe",
        {
            "configs/a.json": json.dumps({"size": "{{size}}", "shape": ["{{size}}"], "name": "x_{{name}}"}),
            "docs/a.md": "# {{name}}\n{{notes}}\nend {{size}}\n",
        },
    )
    files = render_files({"size": 64, "name": "toy", "notes": ["one", "two"]}, template)
    assert files["configs/a.json"] == json.dumps({"size": 64, "shape": [64], "name": "x_toy"}, indent=4) + "\n"
    assert files["docs/a.md"] == "# toy\none\ntwo\nend 64\n"
    # an empty list removes its line, so a paragraph only some data sets have leaves no blank line
    assert render_files({"size": 1, "name": "t", "notes": []}, template)["docs/a.md"] == "# t\nend 1\n"


def test_a_missing_or_an_unused_value_is_an_error_naming_it(tmp_path):
    template = write_template(tmp_path / "recipe", {"configs/a.json": '{"size": "{{size}}"}'})
    with pytest.raises(KeyError, match=r"configs/a.json: expected a value for placeholder \{\{size\}\}, got none."):
        render_files({}, template)
    with pytest.raises(ValueError, match=r"expected each to be used by a template file, got unused \['sise'\]"):
        render_files({"size": 1, "sise": 2}, template)


def test_the_overlay_may_not_repeat_what_the_data_set_row_gives():
    overlay = json.loads((TEMPLATE_DIR / "datasets" / "nih_chestxray_ilm.json").read_text())
    assert bundle_values("nih_chestxray_ilm")["dataset_name"] == "nih"
    with pytest.raises(ValueError, match=r"expected no \['dataset_name'\] \(the data-set row gives them\)"):
        bundle_values("nih_chestxray_ilm", overlay={**overlay, "dataset_name": "other"})
    with pytest.raises(ValueError, match=r"bundle: expected the bundle of a row of monai_ilm.datasets.DATASETS"):
        bundle_values("no_such_ilm")


def test_render_all_writes_the_shipped_bundles_and_check_names_each_differing_file(tmp_path, capsys):
    render_all(tmp_path)
    assert check_bundles(tmp_path) == []
    for bundle in ("nih_chestxray_ilm", "breast_histopathology_ilm", "diabetic_retinopathy_ilm"):
        for name in ("configs/pretrain.json", "configs/metadata.json", "docs/README.md", "LICENSE"):
            assert (tmp_path / bundle / name).read_text() == (BUNDLES_DIR / bundle / name).read_text(), name
    assert not list(tmp_path.rglob("*.tmp"))  # the atomic writes leave no temporary file
    edited = tmp_path / "diabetic_retinopathy_ilm" / "configs" / "quick.json"
    edited.write_text(edited.read_text().replace('"max_epochs": 2', '"max_epochs": 3'))
    (tmp_path / "nih_chestxray_ilm" / "LICENSE").unlink()
    assert check_bundles(tmp_path) == ["diabetic_retinopathy_ilm/configs/quick.json", "nih_chestxray_ilm/LICENSE"]

    with pytest.raises(SystemExit) as failed:
        main(["render-bundles", "--output", str(tmp_path), "--check"])
    assert "2 differing file(s): diabetic_retinopathy_ilm/configs/quick.json, nih_chestxray_ilm/LICENSE" in str(
        failed.value.code
    )
    main(["render-bundles", "--output", str(tmp_path)])
    main(["render-bundles", "--output", str(tmp_path), "--check"])
    assert "every bundle file equals its rendering" in capsys.readouterr().out


def test_the_shipped_bundles_pass_the_command_line_check_by_default(capsys):
    main(["render-bundles", "--check"])
    assert f"{BUNDLES_DIR}: every bundle file equals its rendering." in capsys.readouterr().out
