"""setup.cfg holds the metadata and dependencies; this file adds the one thing setup.cfg cannot say.

The repository's `configs/` folder (presets, experiments, data_prep and eval configs, DeepSpeed JSON) ships inside
the wheel as the data package `moda_train.configs`, so an installed framework finds its configs from any folder
(`moda_train.core.config_loader.CONFIGS_ROOT`) while a checkout keeps them at the top level, where the README's
commands name them.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["moda_train*", "data_prep*", "evaluation*"]), "moda_train.configs"],
    package_dir={"moda_train.configs": "configs"},
    package_data={"moda_train.configs": ["*/*.yaml", "*/*.json"]},
)
