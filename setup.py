"""Install unifiedseg: `python -m pip install -e ".[test]"` (see README.md)."""
from setuptools import find_packages, setup

setup(
    name="unifiedseg",
    version="0.1.0",
    description="Train one semantic segmentation model on many datasets through a unified taxonomy.",
    python_requires=">=3.10",
    packages=find_packages(include=["unifiedseg", "unifiedseg.*"]),
    install_requires=[
        # torch and torchvision are pinned together: a newer torch pulls several GB.
        "torch==2.14.1",
        "torchvision==0.29.1",
        "timm",
        "opencv-python-headless",
        "numpy",
        "pandas",
        "pyyaml",
        "tqdm",
        "tensorboard",
        "omegaconf",
    ],
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={
        "console_scripts": [
            "unifiedseg-taxonomy=unifiedseg.cli.taxonomy:main",
            "unifiedseg-train=unifiedseg.cli.train:main",
            "unifiedseg-make-demo-data=unifiedseg.cli.make_demo_data:main",
        ],
    },
)
