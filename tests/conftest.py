"""Shared fixtures: the reference data in ../shared, hypothesis profile."""

import os
import pathlib

import hypothesis
import pytest

SHARED = pathlib.Path(
    os.environ.get("SCENEJAX_SHARED",
                   pathlib.Path(__file__).resolve().parents[2] / "shared"))
PROTOTYPES = SHARED / "reference" / "similarity_prototypes"
SASNET = SHARED / "reference" / "sasnet_lists"
REPO = pathlib.Path(__file__).resolve().parents[1]

hypothesis.settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile("ci")


@pytest.fixture(scope="session")
def shared():
  if not PROTOTYPES.is_dir():
    pytest.fail(f"reference data not found at {SHARED} (expected ../shared "
                "beside the checkout, or set SCENEJAX_SHARED)")
  return SHARED
