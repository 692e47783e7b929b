"""scenejax: scene recognition with semantic priors, in JAX/Flax."""

import pathlib

import setuptools

TEST_CORE = [
  "hypothesis>=6.100,<7",
  "pytest>=8,<10",
  "pytest-xdist>=3.5,<4",
]

setuptools.setup(
  name="scenejax",
  version="0.1.0",  # scenejax.__version__ (keep the two in step)
  description=(
    "Scene recognition with semantic priors in JAX/Flax: similarity "
    "prototypes (GLS, BCL), pairwise consistency, segmenters, SAS-Net and "
    "SADCL."
  ),
  long_description=(pathlib.Path(__file__).parent / "README.md").read_text(
    encoding="utf-8"
  ),
  long_description_content_type="text/markdown",
  packages=setuptools.find_packages(include=["scenejax", "scenejax.*"]),
  python_requires=">=3.10",
  license="Apache-2.0",
  classifiers=[
    "Programming Language :: Python :: 3.10",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
  ],
  # Each upper bound is the next release series after the newest one the
  # suite passed with; CI tests both ends (README: "Install"): Python 3.11
  # with jax 0.10.2, flax 0.12.8; Python 3.12 with jax 0.12.1, flax
  # 0.12.12; both with orbax-checkpoint 0.12.8, grain 0.2.18, optax 0.2.8,
  # tensorflow-datasets 4.9.10, ml-collections 1.1.0. A new release cannot
  # break a fresh install silently; raise a bound once the suite passes.
  install_requires=[
    "absl-py>=2.1,<3",
    "importlib_resources",  # tensorflow-datasets imports it
    "flax>=0.12,<0.13",
    "grain>=0.2.12,<0.3",
    "jax>=0.8,<0.13",
    "matplotlib>=3.8,<4",
    "ml-collections>=1.0,<2",
    "numpy>=1.26,<3",
    "openpyxl>=3.1,<4",
    "orbax-checkpoint>=0.12.8,<0.13",  # checkpoints.py leans on its internals
    "optax>=0.2.5,<0.3",
    "pillow>=10,<14",
    "safetensors>=0.4,<0.9",
    "scikit-learn>=1.4,<2",  # t-SNE in scenejax.report
    "scipy>=1.11,<2",  # clustering and Spearman's rho in scenejax.report
    # Reading prepared datasets (tfds.data_source) needs no TensorFlow.
    "tensorboardX>=2.6,<3",  # TensorBoard event files without TensorFlow
    "tensorflow-datasets>=4.9.9,<4.10",
    "tqdm>=4.66,<5",
  ],
  # `scenejax COMMAND ...`, beside the `python -m scenejax.X` entry points.
  entry_points={"console_scripts": ["scenejax = scenejax.__main__:main"]},
  extras_require={
    # What the fast lane needs on any supported Python.
    "test-core": TEST_CORE,
    # torch + transformers are the reference implementations the model
    # tests compare against; scenejax itself never imports them.
    "test": [
      *TEST_CORE,
      "ruff>=0.15,<0.18",  # lint and format, run by .ci/run
      "torch==2.13.0",
      "transformers==5.23.0",
      "tensorflow-cpu>=2.16,<2.22",
      "ai-edge-litert>=2.1,<3",  # runs the exported model.tflite
      # colabs/ notebooks run top to bottom in the tests.
      "ipykernel>=6.29,<8",
      "nbclient>=0.10,<0.12",
      "nbformat>=5.10,<6",
    ],
    # Preparing a dataset (TFDS builders encode with TensorFlow).
    "prepare": ["tensorflow-cpu>=2.16,<2.22"],
    # Writing model.tflite (jax2tf + the TFLite converter) and running it.
    "deploy": ["tensorflow-cpu>=2.16,<2.22", "ai-edge-litert>=2.1,<3"],
    # The documentation site: mkdocs build --strict.
    "docs": [
      "mkdocs>=1.6,<2",
      "mkdocs-material>=9.5,<10",
      "mkdocstrings-python>=1.10,<3",
    ],
  },
)
