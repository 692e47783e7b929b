"""Row 6: prototype building, label maps/s of `class_representation` vs
the literal Algorithm 1.

Imported by benchmarks/run.py, which puts benchmarks/ and the repository
root on sys.path.
"""

from __future__ import annotations

import backbones
import numpy as np
import prototype_build
from harness import row

from scenejax import prototype


def rows_prototype(s):
  rng = np.random.default_rng(0)
  maps, labels = prototype_build.make_maps(s["maps"], s["map_size"], 10, rng)
  labels[:10] = np.arange(10)
  t_ours, t_literal = backbones.interleaved_medians(
    lambda: prototype.class_representation(maps, labels, 10, 150),
    lambda: prototype_build.literal_algorithm1(maps, labels, 10, 150),
    repeats=s["repeats"],
  )
  ratio = t_literal / t_ours
  return [
    row(
      6,
      "prototype building (Algorithm 1), label maps/s",
      f"{len(maps) / t_ours:,.0f} maps/s",
      f"{len(maps) / t_literal:,.0f} maps/s (literal loop)",
      ratio,
      ">= 50x",
      ratio >= 50,
      f"{len(maps)} maps of {s['map_size']}², L = 150",
    )
  ]
