"""Packaging beyond what setup.cfg can say: folders at the top of the repository that ship in the wheel.

- ``bundles/`` ships as ``monai_ilm/bundles``: the bundles stay at the top of the repository (the documented layout,
  ``cd bundles/<name>``) and become package data of the wheel, where :func:`monai_ilm.experiment.bundles_root`
  finds them once installed.
- ``dashboard/`` ships as the top-level ``dashboard`` package beside ``monai_ilm``, as in a checkout: its modules
  import each other as ``dashboard.*`` and ``app.py`` registers its pages as ``views/*.py`` beside itself, so one
  layout serves ``streamlit run dashboard/app.py`` in a checkout and ``python -m monai_ilm dashboard`` installed.
- ``docs/`` (the method and results notes the code and README cite) ships as ``monai_ilm/docs``; from a bundle's
  ``docs/README.md`` it is ``../../../docs`` in a checkout and installed alike.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["monai_ilm", "monai_ilm.*", "dashboard", "dashboard.*"]),
        "monai_ilm.bundles",
        "monai_ilm.docs",
        "monai_ilm.bundle_template",  # the one recipe the bundles are rendered from (monai_ilm.bundle_render)
        "dashboard.views",  # the pages: scripts run by st.navigation, no __init__.py
    ],
    package_dir={"monai_ilm.bundles": "bundles", "monai_ilm.docs": "docs"},
    # named patterns, not "**": a bundle run from the checkout writes runs/ and eval/ folders beside its configs
    package_data={
        "monai_ilm.bundles": ["*/LICENSE", "*/configs/*.json", "*/configs/*.conf", "*/docs/*"],
        "monai_ilm.docs": ["*.md"],
        "monai_ilm.bundle_template": [
            "defaults.json",
            "recipe/LICENSE",
            "recipe/configs/*",
            "recipe/docs/*",
            "datasets/*.json",
        ],
        "dashboard": ["paper_results.json", "README.md"],
    },
)
