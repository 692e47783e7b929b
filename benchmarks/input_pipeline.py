"""Images/s per core: decode + resize-256 + random 224 crop + flip.

  python benchmarks/input_pipeline.py [--images 400] [--repeats 3]

The script writes JPEGs (shorter side 256, like a pre-resized dataset) and
runs the same work three ways, each on one core, interleaved:
  * scenejax: grain MapDataset + `input_pipeline.Preprocess` (PIL);
  * tf.data: decode_jpeg + resize + random_crop + random_flip, one thread;
  * PyTorch DataLoader (num_workers=0) with PIL doing the same steps.
Published anchor: FFCV ≈ 326 images/s per vCPU for load + random-resized-
crop + flip. Needs the test extra (TensorFlow, torch).
"""

import argparse
import io
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from scenejax import input_pipeline  # noqa: E402


def make_jpegs(count, rng, short=256):
  """Smooth random images (JPEG-realistic), shorter side `short` (256: a
  pre-resized dataset; 768: photos as SUN397 and Places ship them)."""
  out = []
  for i in range(count):
    w = short + int(rng.integers(0, short // 2))
    small = rng.integers(0, 255, (16, w // 16, 3), np.uint8)
    image = Image.fromarray(small).resize((w, short), Image.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    out.append({"image": buf.getvalue(), "label": i % 10, "name": str(i)})
  return out


def run_scenejax(source, jpeg_draft=False):
  preprocess = input_pipeline.Preprocess(train=True, jpeg_draft=jpeg_draft)
  n = 0
  for batch in input_pipeline.train_batches(
    source,
    32,
    seed=0,
    epoch=0,
    preprocess=preprocess,
    process_index=0,
    process_count=1,
    num_threads=0,
  ):
    n += len(batch["label"])
  return n


def run_bare(source, jpeg_draft=False):
  """`run_scenejax`'s work without grain: a Python loop over a permutation
  calling the same `Preprocess`, and a stack per 32 images. The difference
  is what the pipeline itself costs per image."""
  preprocess = input_pipeline.Preprocess(train=True, jpeg_draft=jpeg_draft)
  order = np.random.default_rng(0).permutation(len(source))
  n = 0
  for start in range(0, len(order) - 31, 32):
    crops = [
      preprocess(source[i], np.random.default_rng([0, start + k]))
      for k, i in enumerate(order[start : start + 32])
    ]
    batch = {k: np.stack([c[k] for c in crops]) for k in crops[0]}
    n += len(batch["label"])
  return n


def run_tf(source):
  import tensorflow as tf

  data = tf.data.Dataset.from_tensor_slices(
    ([r["image"] for r in source], [r["label"] for r in source])
  )

  def augment(encoded, label):
    image = tf.io.decode_jpeg(encoded, channels=3)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = 256.0 / tf.reduce_min(shape)
    image = tf.image.resize(image, tf.cast(tf.round(shape * scale), tf.int32))
    image = tf.image.random_crop(image, (224, 224, 3))
    image = tf.image.random_flip_left_right(image)
    return tf.cast(image, tf.uint8), label

  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  data = (
    data.shuffle(len(source), seed=0)
    .map(augment)
    .batch(32, drop_remainder=True)
    .with_options(options)
  )
  n = 0
  for images, _ in data:
    n += int(images.shape[0])
  return n


def run_torch(source):
  import torch

  class Decoded(torch.utils.data.Dataset):
    def __len__(self):
      return len(source)

    def __getitem__(self, i):
      with Image.open(io.BytesIO(source[i]["image"])) as image:
        image = image.convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize(
          (round(image.size[0] * scale), round(image.size[1] * scale)),
          Image.BILINEAR,
        )
      w, h = image.size
      left = np.random.randint(0, w - 224 + 1)
      top = np.random.randint(0, h - 224 + 1)
      array = np.asarray(image)[top : top + 224, left : left + 224]
      if np.random.rand() < 0.5:
        array = array[:, ::-1]
      return torch.from_numpy(array.copy()), source[i]["label"]

  loader = torch.utils.data.DataLoader(
    Decoded(), batch_size=32, shuffle=True, num_workers=0, drop_last=True
  )
  n = 0
  for images, _ in loader:
    n += images.shape[0]
  return n


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--images", type=int, default=400)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  import tensorflow as tf
  import torch

  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  torch.set_num_threads(1)
  source = make_jpegs(args.images, np.random.default_rng(0))
  runs = {
    "scenejax (grain + PIL)": run_scenejax,
    "tf.data": run_tf,
    "PyTorch DataLoader + PIL": run_torch,
  }
  rates = {k: [] for k in runs}
  for fn in runs.values():  # warm-up
    fn(source[:64])
  for _ in range(args.repeats):
    for name, fn in runs.items():
      start = time.perf_counter()
      n = fn(source)
      rates[name].append(n / (time.perf_counter() - start))
  print(
    f"machine: {platform.machine()}, {os.cpu_count()} cores; one core "
    f"each; {args.images} JPEGs (shorter side 256); median of "
    f"{args.repeats}, interleaved"
  )
  print()
  ours = statistics.median(rates["scenejax (grain + PIL)"])
  print("| pipeline | images/s per core | scenejax / this |")
  print("|---|---|---|")
  for name, values in rates.items():
    rate = statistics.median(values)
    print(f"| {name} | {rate:.0f} | {ours / rate:.2f}x |")


if __name__ == "__main__":
  main()
