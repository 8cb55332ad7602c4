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
        "pillow",
    ],
    extras_require={
        # ONNX export and its check against onnxruntime (tools/export.py); pinned as tested.
        "export": ["onnx==1.23.2", "onnxscript==0.7.2", "onnxruntime==1.32.0"],
        "test": ["pytest", "hypothesis", "onnx==1.23.2", "onnxscript==0.7.2", "onnxruntime==1.32.0"],
    },
    entry_points={
        "console_scripts": [
            "unifiedseg-taxonomy=unifiedseg.cli.taxonomy:main",
            "unifiedseg-train=unifiedseg.cli.train:main",
            "unifiedseg-make-demo-data=unifiedseg.cli.make_demo_data:main",
            "unifiedseg-test=unifiedseg.cli.test:main",
            "unifiedseg-demo=unifiedseg.cli.demo:main",
            "unifiedseg-export=unifiedseg.cli.export:main",
        ],
    },
)
