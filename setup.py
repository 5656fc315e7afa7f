"""Packaging beyond what setup.cfg can say: the top-level ``bundles/`` folder ships as ``monai_ilm/bundles``.

The bundles stay at the top of the repository (the documented layout, ``cd bundles/<name>``) and become
package data of the wheel, where :func:`monai_ilm.experiment.bundles_root` finds them once installed.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["monai_ilm", "monai_ilm.*"]), "monai_ilm.bundles"],
    package_dir={"monai_ilm.bundles": "bundles"},
    # named patterns, not "**": a bundle run from the checkout writes runs/ and eval/ folders beside its configs
    package_data={"monai_ilm.bundles": ["*/LICENSE", "*/configs/*.json", "*/configs/*.conf", "*/docs/*"]},
)
