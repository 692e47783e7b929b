"""Label maps/s of `class_representation` vs a literal Algorithm 1 loop.

  python benchmarks/prototype_build.py [--maps 200] [--size 256] [--repeats 5]

Both run on the same segmenter-like maps (ids 0..150, 256x256 uint8, layered
ellipses and rectangles) in the same process, interleaved; the figure is the ratio of their medians. The literal
loop is [SP] Algorithm 1 as printed: for every map, for l = 1..L, `l in M`.
"""

import argparse
import platform
import statistics
import time

import numpy as np

from scenejax import prototype


def literal_algorithm1(label_maps, labels, num_classes, num_semantic):
  reps = np.zeros((num_classes, num_semantic))
  for c in range(num_classes):
    maps = [m for m, y in zip(label_maps, labels) if y == c]
    for m in maps:
      s = np.zeros(num_semantic)
      for l in range(1, num_semantic + 1):
        if l in m:
          s[l - 1] = 1
      reps[c] += s
    reps[c] /= len(maps)
  return reps


def make_maps(num_maps, size, num_classes, rng):
  """Segmenter-like maps: a background class plus 10-30 layered ellipses and
  rectangles of random semantic ids (0..150), piecewise constant."""
  yy, xx = np.mgrid[:size, :size]
  maps = []
  for _ in range(num_maps):
    m = np.full((size, size), rng.integers(1, 151), np.uint8)
    for _ in range(rng.integers(10, 30)):
      cy, cx = rng.uniform(0, size, 2)
      ry, rx = rng.uniform(size / 40, size / 4, 2)
      if rng.random() < 0.5:
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
      else:
        mask = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
      m[mask] = rng.integers(0, 151)
    maps.append(m)
  return maps, rng.integers(0, num_classes, num_maps)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--maps", type=int, default=200)
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  maps, labels = make_maps(args.maps, args.size, args.classes, rng)
  labels[: args.classes] = np.arange(args.classes)
  ours_t, literal_t, hist_t = [], [], []
  for _ in range(args.repeats):
    t = time.perf_counter()
    ours = prototype.class_representation(maps, labels, args.classes, 150)
    ours_t.append(time.perf_counter() - t)
    t = time.perf_counter()
    ref = literal_algorithm1(maps, labels, args.classes, 150)
    literal_t.append(time.perf_counter() - t)
    t = time.perf_counter()
    _ = [np.bincount(m.ravel(), minlength=151)[1:] > 0 for m in maps]
    hist_t.append(time.perf_counter() - t)
  np.testing.assert_allclose(ours, ref)  # same answer, or the race is moot
  ours_rate = args.maps / statistics.median(ours_t)
  literal_rate = args.maps / statistics.median(literal_t)
  hist_rate = args.maps / statistics.median(hist_t)
  print(
    f"machine: {platform.processor() or platform.machine()}, "
    f"{platform.python_implementation()} {platform.python_version()}"
  )
  print(
    f"{args.maps} maps of {args.size}x{args.size}, L = 150, median of "
    f"{args.repeats}"
  )
  print("| what | label maps/s |")
  print("|---|---|")
  print(f"| class_representation (change points) | {ours_rate:,.0f} |")
  print(
    f"| literal Algorithm 1 loop (`l in M`, l = 1..L) | {literal_rate:,.0f} |"
  )
  print(f"| presence only, np.bincount of every pixel | {hist_rate:,.0f} |")
  print(
    f"| ratio class_representation / literal | "
    f"{ours_rate / literal_rate:.1f}x |"
  )


if __name__ == "__main__":
  main()
