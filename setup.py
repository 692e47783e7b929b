"""scenejax: scene recognition with semantic priors, in JAX/Flax."""

import setuptools

setuptools.setup(
  name="scenejax",
  version="0.1.0",
  description=(
    "Similarity-prototype training (GLS, BCL) and pairwise consistency "
    "learning for scene recognition, in JAX/Flax."
  ),
  packages=setuptools.find_packages(include=["scenejax", "scenejax.*"]),
  python_requires=">=3.10",
  install_requires=[
    "absl-py>=2.1",
    "importlib_resources",  # tensorflow-datasets imports it
    "flax>=0.12",
    "grain>=0.2.12",
    "jax>=0.8",
    "matplotlib>=3.8",
    "ml-collections>=1.0",
    "numpy>=1.26",
    "openpyxl>=3.1",
    "orbax-checkpoint>=0.11",
    "optax>=0.2.5",
    "pillow>=10",
    "safetensors>=0.4",
    "scikit-learn>=1.4",  # t-SNE in scenejax.report
    "scipy>=1.11",  # clustering and Spearman's rho in scenejax.report
    # Reading prepared datasets (tfds.data_source) needs no TensorFlow.
    "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow
    "tensorflow-datasets>=4.9.9",
    "tqdm>=4.66",
  ],
  extras_require={
    # torch + transformers are the reference implementations the model
    # tests compare against; scenejax itself never imports them.
    "test": [
      "hypothesis>=6.100",
      "pytest>=8",
      "pytest-xdist>=3.5",
      "torch==2.13.0",
      "transformers==5.23.0",
      "tensorflow-cpu>=2.16",
      # colabs/ notebooks run top to bottom in the tests.
      "ipykernel>=6.29",
      "nbclient>=0.10",
      "nbformat>=5.10",
    ],
    # Preparing a dataset (TFDS builders encode with TensorFlow).
    "prepare": ["tensorflow-cpu>=2.16"],
  },
)
