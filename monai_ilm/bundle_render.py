"""The shipped bundles, rendered from one recipe: ``monai_ilm/bundle_template``.

Every bundle runs the same recipe; only the data set changes. The recipe is written once, as package data:
``bundle_template/recipe/`` holds every file of a bundle folder (``configs/*.json``, ``logging.conf``,
``docs/README.md``, ``docs/data_license.txt``, ``LICENSE``) with ``{{key}}`` placeholders where a data set's own
value goes. The values of a data set come from two places that each say something different:

- its row of :data:`monai_ilm.datasets.DATASETS` gives ``dataset_name`` (the row's name) and ``bundle`` (the
  folder): the facts the rest of the package (readers, runner, dashboard) also needs;
- its overlay ``bundle_template/datasets/<bundle>.json`` gives everything only the bundle uses: its config
  defaults (``dataset_dir``, ``image_size``, ``batch_size``), its metadata fields and its README facts. These are
  paragraphs of prose; kept in the package's data, they neither swell the table every reader imports nor sit in
  Python strings, and a bundle's whole difference from the others reads in one short file. Values most data
  sets share (the 2D ones: three channels, no ``volume`` settings, the reference's pooling) are written once,
  in ``bundle_template/defaults.json``, and an overlay gives only where it differs;
- the metadata's input shape and channel names follow from those (``spatial_shape``: ``image_size`` on each
  axis of the row's preset; ``channel_def``: R, G, B or one intensity channel).

In a JSON file a string that is exactly ``"{{key}}"`` becomes the value itself (a number stays a number); a
placeholder inside a longer string, or in a text file, is replaced by the value's text. In a text file a line
that is only ``{{key}}`` takes the lines of a list value (none for an empty list), so a paragraph only some data
sets have leaves no blank line. A placeholder without a value and a value no file uses are errors, so a typo in
an overlay cannot pass unnoticed. The rendered folders are plain, self-contained MONAI bundles (no includes):
what the model zoo expects and what ``python -m monai.bundle run`` reads from the checkout or the wheel. JSON is
written as ``json.dumps(indent=4)`` plus a newline, the format of the zoo's pre-commit rules.

``python -m monai_ilm render-bundles`` writes them; ``--check`` says which checked-in file differs (the tests do
the same), so the template and the bundles cannot drift apart.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai_ilm.datasets import DATASETS, DatasetSpec
from monai_ilm.transforms.presets import get_preset

__all__ = ["TEMPLATE_DIR", "bundle_values", "check_bundles", "render_all", "render_bundle", "render_files"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "bundle_template"
"""The recipe (``recipe/``) and the per-data-set overlays (``datasets/<bundle>.json``)."""

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_WHOLE = re.compile(r"^\{\{(\w+)\}\}$")


def _spec_of(bundle: str) -> DatasetSpec:
    for spec in DATASETS.values():
        if spec.bundle == bundle:
            return spec
    known = sorted(spec.bundle for spec in DATASETS.values() if spec.bundle)
    raise ValueError(f"bundle: expected the bundle of a row of monai_ilm.datasets.DATASETS ({known}), got {bundle!r}.")


def bundle_values(
    bundle: str, dataset: DatasetSpec | None = None, overlay: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The values a bundle's placeholders take: its data-set row's name and folder, then its overlay.

    Args:
        bundle: the bundle folder name, e.g. ``"nih_chestxray_ilm"``.
        dataset: its row; default: the row of :data:`~monai_ilm.datasets.DATASETS` whose ``bundle`` it is.
        overlay: its overlay values; default: ``bundle_template/datasets/<bundle>.json``. Both over
            ``bundle_template/defaults.json``.

    Raises:
        ValueError: when no row names the bundle, or the overlay repeats a value the row gives or the renderer derives.
        FileNotFoundError: when the bundle has no overlay file.
    """
    spec = _spec_of(bundle) if dataset is None else dataset
    if overlay is None:
        path = TEMPLATE_DIR / "datasets" / f"{bundle}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: expected the overlay of bundle {bundle!r} (its own values), got none.")
        overlay = json.loads(path.read_text())
    values = {"bundle": bundle, "dataset_name": spec.name}
    for given, by in ((values.keys(), "the data-set row gives them"), (_DERIVED, "the renderer derives them")):
        repeated = sorted(given & overlay.keys())
        if repeated:
            raise ValueError(f"overlay of {bundle}: expected no {repeated} ({by}), got them.")
    merged = {**values, **json.loads((TEMPLATE_DIR / "defaults.json").read_text()), **overlay}
    return {**merged, **_derived(spec, merged)}


_DERIVED = {"spatial_shape", "channel_def", "input_shape", "trace_shape", "pool_note"}


def _derived(spec: DatasetSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The input's description in the metadata and the README, from the row's preset (2D or 3D), the bundle's size,
    channels and pooling."""
    spatial_dims = get_preset(spec.preset).spatial_dims if spec.preset is not None else 2
    channels, size = values["channels"], values["image_size"]
    channel_def = {"0": "R", "1": "G", "2": "B"} if channels == 3 else {str(c): "intensity" for c in range(channels)}
    shape = [channels, *[size] * spatial_dims]
    power = "²" if spatial_dims == 2 else "³"
    return {
        "spatial_shape": shape[1:],
        "channel_def": channel_def,
        "input_shape": " × ".join(str(n) for n in shape),
        "trace_shape": json.dumps([1, *shape]).replace(" ", ""),
        "pool_note": ", ".join(f"{n}{power}" for n in values["mse_pool_sizes"]),
    }


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(line) for line in value)
    return value if isinstance(value, str) else json.dumps(value)


def _substitute(text: str, values: Mapping[str, Any], used: set[str], where: str) -> str:
    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"{where}: expected a value for placeholder {{{{{key}}}}}, got none.")
        used.add(key)
        return _text(values[key])

    return _PLACEHOLDER.sub(replace, text)


def _fill_json(node: Any, values: Mapping[str, Any], used: set[str], where: str) -> Any:
    if isinstance(node, dict):
        return {_substitute(k, values, used, where): _fill_json(v, values, used, where) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill_json(item, values, used, where) for item in node]
    if isinstance(node, str):
        whole = _WHOLE.match(node)
        if whole and whole.group(1) in values:
            used.add(whole.group(1))
            return values[whole.group(1)]
        return _substitute(node, values, used, where)
    return node


def _fill_text(text: str, values: Mapping[str, Any], used: set[str], where: str) -> str:
    lines = []
    for line in text.split("\n"):
        whole = _WHOLE.match(line.strip())
        if whole and isinstance(values.get(whole.group(1)), list):
            used.add(whole.group(1))
            lines.extend(str(item) for item in values[whole.group(1)])
        else:
            lines.append(_substitute(line, values, used, where))
    return "\n".join(lines)


def render_files(values: Mapping[str, Any], template: Path | None = None) -> dict[str, str]:
    """Each file of a bundle folder rendered with ``values``: ``{relative path: text}``.

    Args:
        values: the placeholder values (:func:`bundle_values`).
        template: the recipe folder; default ``bundle_template/recipe``.

    Raises:
        KeyError: naming the file and the placeholder that has no value.
        ValueError: naming the values no file uses.
    """
    root = TEMPLATE_DIR / "recipe" if template is None else Path(template)
    used: set[str] = set()
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        text = path.read_text()
        if path.suffix == ".json":
            files[name] = json.dumps(_fill_json(json.loads(text), values, used, name), indent=4) + "\n"
        else:
            files[name] = _fill_text(text, values, used, name)
    unused = sorted(set(values) - used)
    if unused:
        raise ValueError(f"bundle values: expected each to be used by a template file, got unused {unused}.")
    return files


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def render_bundle(
    bundle: str,
    out_dir: str | os.PathLike,
    *,
    dataset: DatasetSpec | None = None,
    overlay: Mapping[str, Any] | None = None,
) -> Path:
    """Write one bundle folder, every file atomically; files of the folder the recipe does not name are kept.

    Args:
        bundle: the bundle folder name.
        out_dir: the folder to write (created when missing), e.g. ``bundles/nih_chestxray_ilm``.
        dataset: its data-set row (default: the row naming ``bundle``).
        overlay: its overlay values (default: its overlay file).

    Returns:
        ``out_dir`` as a path.
    """
    out = Path(out_dir)
    for name, text in render_files(bundle_values(bundle, dataset, overlay)).items():
        _write_atomic(out / name, text)
    return out


def _template_bundles() -> list[str]:
    return sorted(spec.bundle for spec in DATASETS.values() if spec.bundle is not None)


def render_all(bundles_dir: str | os.PathLike) -> list[Path]:
    """Write every bundle of the data-set table under ``bundles_dir`` (``bundles/<bundle>/``)."""
    return [render_bundle(bundle, Path(bundles_dir) / bundle) for bundle in _template_bundles()]


def check_bundles(bundles_dir: str | os.PathLike) -> list[str]:
    """The files under ``bundles_dir`` that differ from the rendering (missing ones included), as relative paths."""
    differing = []
    for bundle in _template_bundles():
        for name, text in render_files(bundle_values(bundle)).items():
            path = Path(bundles_dir) / bundle / name
            if not path.is_file() or path.read_text() != text:
                differing.append(f"{bundle}/{name}")
    return differing
