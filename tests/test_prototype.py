"""Similarity prototype: Algorithm 1 / Eq. 1-4, the NPZ format, the CLI."""

import glob
import os

import numpy as np
import pytest
import reference
from conftest import PROTOTYPES, SASNET, assert_user_error, run_cli
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from scenejax import prototype
from scenejax.errors import DatasetError, PrototypeError


def _save(path, similarity, metric="cosine", class_names=("a", "b"), **kw):
  prototype.save_prototype(
    path,
    prototype.Prototype(
      similarity=np.asarray(similarity),
      metric=metric,
      class_names=tuple(class_names),
      **kw,
    ),
  )


def random_maps(rng, num_maps, num_classes, num_semantic, size=(6, 5)):
  labels = np.concatenate(
    [
      np.arange(num_classes),
      rng.integers(0, num_classes, num_maps - num_classes),
    ]
  )
  maps = []
  for _ in labels:
    # Sparse ids so that absent classes are common.
    m = rng.integers(0, num_semantic + 1, size)
    m[rng.random(size) < 0.6] = 0
    maps.append(m.astype(np.uint8))
  return maps, labels


@given(
  seed=st.integers(0, 2**31),
  num_classes=st.integers(1, 5),
  num_semantic=st.integers(1, 12),
  extra=st.integers(0, 10),
)
def test_class_representation_matches_algorithm1(
  seed, num_classes, num_semantic, extra
):
  rng = np.random.default_rng(seed)
  maps, labels = random_maps(
    rng, num_classes + extra, num_classes, num_semantic
  )
  ours, counts = prototype.class_representation(
    iter(maps), iter(labels), num_classes, num_semantic
  )
  ref = reference.algorithm1_class_representation(
    maps, labels, num_classes, num_semantic
  )
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-15)
  np.testing.assert_array_equal(
    counts, np.bincount(labels, minlength=num_classes)
  )


@given(
  seed=st.integers(0, 2**31),
  num=st.integers(1, 6),
  metric=st.sampled_from(prototype.METRICS),
)
def test_similarity_matches_eq2_to_4(seed, num, metric):
  rng = np.random.default_rng(seed)
  reps = rng.uniform(0, 1, (num, 9))
  reps[rng.random((num, 9)) < 0.3] = 0
  reps[:, 0] = np.maximum(reps[:, 0], 0.01)  # no all-zero class
  ours = prototype.similarity_prototype(reps, metric)
  np.testing.assert_allclose(
    ours, reference.similarity(reps, metric), rtol=1e-12, atol=1e-12
  )
  np.testing.assert_array_equal(np.diag(ours), 1.0)
  np.testing.assert_array_equal(ours, ours.T)


def test_chunks_of_maps_with_different_shapes():
  """Over the 64-map chunk size, mixed shapes, empty and 1-pixel maps."""
  rng = np.random.default_rng(3)
  shapes = [(0, 5), (1, 1), (7, 3), (1, 40), (12, 12)]
  maps = [
    rng.integers(0, 31, shapes[i % 5]).astype(np.int32) for i in range(150)
  ]
  for m in maps[::4]:
    m[...] = m.flat[0] if m.size else 0  # constant maps: one run each
  labels = np.arange(150) % 4
  ours = prototype.presence_vectors(maps, 30)
  for m, row in zip(maps, ours):
    np.testing.assert_array_equal(row, [(m == l).any() for l in range(1, 31)])
  np.testing.assert_allclose(
    prototype.class_representation(maps, labels, 4, 30)[0],
    reference.algorithm1_class_representation(maps, labels, 4, 30),
  )


def test_workers_give_the_same_result():
  rng = np.random.default_rng(0)
  maps, labels = random_maps(rng, 60, 4, 20, size=(16, 16))
  serial, _ = prototype.class_representation(maps, labels, 4, 20)
  parallel, _ = prototype.class_representation(maps, labels, 4, 20, workers=2)
  np.testing.assert_array_equal(serial, parallel)


def test_ade20k_convention_and_id_errors():
  m = np.array([[0, 1], [150, 150]])
  presence = prototype.presence_vector(m)
  assert presence.shape == (150,)
  assert presence[0] and presence[149] and presence.sum() == 2
  with pytest.raises(
    PrototypeError,
    match=r"label map #1: value 151 is not "
    r"an id of label format 'ade20k'; allowed: 0 \(unlabeled\) or 1..150",
  ):
    prototype.class_representation([m, np.array([[151]])], [0, 0], 1)
  with pytest.raises(PrototypeError, match="value -1 is not"):
    prototype.presence_vector(np.array([[-1]]))
  # An mmseg-style map (0..149, 255 = ignore) read as ADE20K: the 255 is
  # refused and the message points at the other format.
  with pytest.raises(
    PrototypeError, match="look like --label_format=zero_based"
  ):
    prototype.presence_vector(np.array([[0, 255]]))


@given(
  seed=st.integers(0, 2**31),
  num_classes=st.integers(1, 4),
  num_semantic=st.integers(1, 12),
  extra=st.integers(0, 8),
)
def test_zero_based_maps_match_algorithm1_on_shifted_ids(
  seed, num_classes, num_semantic, extra
):
  """zero_based maps (0..L-1, 255 = unlabeled) give the representation of
  the literal Algorithm 1 run on the same maps rewritten pixel by pixel in
  the ADE20K convention (k -> k + 1, 255 -> 0)."""
  rng = np.random.default_rng(seed)
  labels = np.concatenate(
    [np.arange(num_classes), rng.integers(0, num_classes, extra)]
  )
  maps, ade20k = [], []
  for _ in labels:
    m = rng.integers(0, num_semantic, (5, 6)).astype(np.uint8)
    m[rng.random((5, 6)) < 0.5] = 255
    maps.append(m)
    shifted = np.zeros(m.shape, np.int64)
    for (i, j), v in np.ndenumerate(m):
      shifted[i, j] = 0 if v == 255 else int(v) + 1
    ade20k.append(shifted)
  ours, _ = prototype.class_representation(
    maps, labels, num_classes, num_semantic, label_format="zero_based"
  )
  want = reference.algorithm1_class_representation(
    ade20k, labels, num_classes, num_semantic
  )
  np.testing.assert_allclose(ours, want, rtol=0, atol=1e-15)


def test_zero_based_label_format_shifts_ids():
  """zero_based: id k is ADE20K class k+1 (so 0 = "wall" is kept) and 255
  is unlabeled; reading the same map as ade20k would drop "wall"."""
  m = np.array([[0, 0, 255], [149, 3, 255]])
  presence = prototype.presence_vector(m, label_format="zero_based")
  want = np.zeros(150, bool)
  want[[0, 3, 149]] = True  # columns of ADE20K ids 1, 4, 150
  np.testing.assert_array_equal(presence, want)
  with pytest.raises(
    PrototypeError, match="value 150 is not an id of label format 'zero_based'"
  ):
    prototype.presence_vector(np.array([[150]]), label_format="zero_based")


def test_class_errors_name_the_class():
  maps = [np.array([[1]]), np.array([[2]])]
  with pytest.raises(PrototypeError, match=r"2 \(bathroom\)"):
    prototype.class_representation(
      maps, [0, 1], 3, class_names=["a", "b", "bathroom"]
    )
  with pytest.raises(PrototypeError, match=r"scene label 5 outside"):
    prototype.class_representation(maps, [0, 5], 3)
  with pytest.raises(PrototypeError, match="more label maps"):
    prototype.class_representation(maps, [0], 3)
  with pytest.raises(PrototypeError, match="more scene labels"):
    prototype.class_representation(maps, [0, 1, 1], 2)
  # Class 1's images have no labelled pixel: cosine undefined, named.
  rep, _ = prototype.class_representation(
    [np.array([[1]]), np.array([[0]])], [0, 1], 2
  )
  with pytest.raises(PrototypeError, match=r"no labelled pixel: 1 \(kitchen\)"):
    prototype.similarity_prototype(
      rep, "cosine", class_names=["bath", "kitchen"]
    )
  # exp(-euclidean) is defined for it.
  assert prototype.similarity_prototype(rep, "euclidean")[0, 1] == (
    pytest.approx(np.exp(-1.0))
  )


# --------------------------------------------------------------------------
# File format


def test_save_load_roundtrip(tmp_path):
  rng = np.random.default_rng(1)
  maps, labels = random_maps(rng, 30, 3, 7)
  built = prototype.build_prototype(
    maps,
    labels,
    ["x", "y", "z"],
    metric="euclidean",
    num_semantic_classes=7,
    semantic_class_names=list("abcdefg"),
  )
  rep = reference.algorithm1_class_representation(maps, labels, 3, 7)
  s = reference.similarity(rep, "euclidean")
  counts = np.bincount(labels)
  path = tmp_path / "p.npz"
  prototype.save_prototype(path, built)
  with np.load(path, allow_pickle=False) as npz:
    assert sorted(npz.files) == sorted(
      [
        "similarity",
        "metric",
        "class_names",
        "format_version",
        "representation",
        "image_counts",
        "semantic_class_names",
      ]
    )
    assert npz["similarity"].dtype == np.float32
  p = prototype.load_prototype(path, num_classes=3, class_names=["x", "y", "z"])
  np.testing.assert_allclose(p.similarity, s, rtol=1e-6)
  assert p.metric == "euclidean" and p.class_names == ("x", "y", "z")
  assert p.format_version == 1 and p.semantic_class_names == tuple("abcdefg")
  np.testing.assert_array_equal(p.image_counts, counts)


def test_load_bare_published_npz(shared):
  del shared
  p = prototype.load_prototype(
    PROTOTYPES / "Places_7_SP_cosine.npz", num_classes=7
  )
  assert p.num_classes == 7 and p.metric is None and p.class_names is None


BAD_MATRICES = {
  "non-empty square": np.ones((2, 3)),
  "non-finite": np.array([[1.0, np.nan], [np.nan, 1.0]]),
  r"\[0, 1\]": np.array([[1.0, -0.2], [-0.2, 1.0]]),
  "unit diagonal": np.array([[0.9, 0.2], [0.2, 1.0]]),
  "symmetric": np.array([[1.0, 0.2], [0.3, 1.0]]),
}


@pytest.mark.parametrize("message", sorted(BAD_MATRICES))
def test_bad_matrices_are_rejected_on_load(tmp_path, message):
  path = tmp_path / "bad.npz"
  np.savez(path, similarity=BAD_MATRICES[message])
  with pytest.raises(
    PrototypeError, match=f"bad.npz: key 'similarity'.*{message}"
  ):
    prototype.load_prototype(path)


def test_load_errors_name_file_and_key(tmp_path):
  good = tmp_path / "good.npz"
  _save(good, np.eye(2))
  with pytest.raises(PrototypeError, match="has 2 classes, the dataset has 3"):
    prototype.load_prototype(good, num_classes=3)
  with pytest.raises(
    PrototypeError,
    match="good.npz: the file records metric "
    "'cosine' but the config asks for 'euclidean'",
  ):
    prototype.load_prototype(good, metric="euclidean")
  assert prototype.load_prototype(good, metric="cosine").metric == "cosine"
  with pytest.raises(
    PrototypeError,
    match=r"class 1 is 'b' in the prototype "
    r"but 'c' in the dataset",
  ):
    prototype.load_prototype(good, class_names=["a", "c"])
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(good.read_bytes()[:200])
  with pytest.raises(PrototypeError, match="truncated.npz: not a readable"):
    prototype.load_prototype(truncated)
  text = tmp_path / "text.npz"
  text.write_text("similarity = 1")
  with pytest.raises(PrototypeError, match="text.npz: not a readable"):
    prototype.load_prototype(text)
  with pytest.raises(PrototypeError, match="no such prototype file"):
    prototype.load_prototype(tmp_path / "missing.npz")
  nokey = tmp_path / "nokey.npz"
  np.savez(nokey, sim=np.eye(2))
  with pytest.raises(PrototypeError, match="missing key 'similarity'"):
    prototype.load_prototype(nokey)
  pickled = tmp_path / "pickled.npz"
  np.savez(
    pickled,
    similarity=np.eye(2),
    class_names=np.array([{"a": 1}, None], dtype=object),
  )
  with pytest.raises(PrototypeError, match="pickled.npz: holds a pickled"):
    prototype.load_prototype(pickled)


def test_nothing_half_written(tmp_path, monkeypatch):
  path = tmp_path / "p.npz"
  _save(path, np.eye(2))
  before = path.read_bytes()
  # Invalid input: rejected before anything is written.
  with pytest.raises(PrototypeError):
    _save(path, np.ones((2, 3)))

  # A failure in the middle of writing: the old file stays, no temp remains.
  def failing_savez(f, **arrays):
    f.write(b"PK\x03\x04partial")
    raise OSError("disk full")

  monkeypatch.setattr(np, "savez", failing_savez)
  with pytest.raises(OSError, match="disk full"):
    _save(path, np.eye(2))
  assert path.read_bytes() == before
  assert os.listdir(tmp_path) == ["p.npz"]


# --------------------------------------------------------------------------
# Published matrices and class lists


def test_read_sasnet_class_names(shared):
  del shared
  names = prototype.read_class_names(SASNET / "SUN397_scene_names.txt")
  assert len(names) == 397 and names[0] == "/a/abbey"
  assert names == sorted(names)  # index order is the sorted order
  assert (
    len(prototype.read_class_names(SASNET / "MITIndoor67_scene_names.txt"))
    == 67
  )


@pytest.mark.parametrize(
  "xlsx", sorted(glob.glob(str(PROTOTYPES / "*.xlsx"))), ids=os.path.basename
)
def test_import_published_xlsx(tmp_path, xlsx, shared):
  del shared
  base = os.path.basename(xlsx)[: -len(".xlsx")]
  metric = "cosine" if base.endswith("cosine") else "euclidean"
  expected = np.load(PROTOTYPES / (base + ".npz"))["similarity"]
  if base.startswith("SUN397"):
    names_file = SASNET / "SUN397_scene_names.txt"
  elif base.startswith("MIT67"):
    names_file = SASNET / "MITIndoor67_scene_names.txt"
  else:
    names_file = tmp_path / "names.txt"
    names_file.write_text("\n".join(f"class_{i}" for i in range(len(expected))))
  out = tmp_path / "p.npz"
  proc = run_cli(
    "scenejax.prototype",
    "import_xlsx",
    f"--xlsx={xlsx}",
    f"--class_names={names_file}",
    f"--metric={metric}",
    f"--out={out}",
  )
  assert proc.returncode == 0, proc.stderr
  p = prototype.load_prototype(
    out, class_names=prototype.read_class_names(names_file)
  )
  assert p.metric == metric
  np.testing.assert_allclose(p.similarity, expected, rtol=1e-6, atol=1e-7)


def test_import_xlsx_errors(tmp_path):
  import openpyxl

  book = openpyxl.Workbook()
  sheet = book.active
  sheet.append([1.0, 0.5])
  sheet.append([0.5, "n/a"])
  bad = tmp_path / "bad.xlsx"
  book.save(bad)
  names = tmp_path / "names.txt"
  names.write_text("a\nb\n")
  out = tmp_path / "out.npz"
  args = [
    "import_xlsx",
    f"--xlsx={bad}",
    f"--class_names={names}",
    "--metric=cosine",
    f"--out={out}",
  ]
  assert_user_error(
    run_cli("scenejax.prototype", *args), "bad.xlsx: cell B2 is 'n/a'"
  )
  assert not out.exists()
  names.write_text("a\nb\nc\n")
  sheet["B2"] = 1.0
  book.save(bad)
  assert_user_error(
    run_cli("scenejax.prototype", *args), "has 3 class names but"
  )
  (tmp_path / "notxlsx.xlsx").write_text("hello")
  args[1] = f"--xlsx={tmp_path / 'notxlsx.xlsx'}"
  assert_user_error(
    run_cli("scenejax.prototype", *args), "not a readable .xlsx"
  )
  assert not out.exists()


# --------------------------------------------------------------------------
# Command line: build from files, show


def test_build_from_png_and_npy_files(tmp_path):
  rng = np.random.default_rng(2)
  maps, labels = random_maps(rng, 12, 3, 150, size=(20, 24))
  root = tmp_path / "maps"
  lines = []
  for i, (m, y) in enumerate(zip(maps, labels)):
    sub = root / f"class{y}"
    sub.mkdir(parents=True, exist_ok=True)
    if i % 2:
      Image.fromarray(m, mode="L").save(sub / f"{i}.png")
      rel = f"class{y}/{i}.png"
    else:
      np.save(sub / f"{i}.npy", m.astype(np.int32))
      rel = f"class{y}/{i}.npy"
    # Mix index and name labels.
    lines.append(f"{rel} {y if i % 3 else ['bath', 'bed', 'cook'][y]}")
  (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
  (tmp_path / "names.txt").write_text("bath\nbed\ncook\n")
  out = tmp_path / "proto.npz"
  proc = run_cli(
    "scenejax.prototype",
    "build",
    f"--label_maps={root}",
    f"--list={tmp_path / 'list.txt'}",
    f"--class_names={tmp_path / 'names.txt'}",
    "--label_format=ade20k",
    "--metric=cosine",
    f"--out={out}",
  )
  assert proc.returncode == 0, proc.stderr
  p = prototype.load_prototype(out, class_names=["bath", "bed", "cook"])
  ref_rep = reference.algorithm1_class_representation(maps, labels, 3, 150)
  np.testing.assert_allclose(p.representation, ref_rep, rtol=1e-6)
  np.testing.assert_allclose(
    p.similarity, reference.similarity(ref_rep, "cosine"), rtol=1e-6
  )
  np.testing.assert_array_equal(p.image_counts, np.bincount(labels))

  png = tmp_path / "heat.png"
  proc = run_cli("scenejax.prototype", "show", out, "--top=2", f"--png={png}")
  assert proc.returncode == 0, proc.stderr
  shown = proc.stdout
  assert "classes C        3" in shown and "metric           cosine" in shown
  i, j, v = prototype.most_similar_pairs(p.similarity, 1)[0]
  names = ["bath", "bed", "cook"]
  assert f"{v:.4f}  {names[i]}  ~  {names[j]}" in shown
  with Image.open(png) as image:
    assert image.format == "PNG" and image.size[0] > 200


@pytest.mark.slow
def test_build_errors_name_the_file(tmp_path):
  root = tmp_path / "maps"
  root.mkdir()
  Image.fromarray(np.full((4, 4), 151, np.uint8), mode="L").save(root / "a.png")
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "rgb.png")
  Image.fromarray(np.full((4, 4), 3, np.uint8), mode="L").save(
    root / "lossy.jpg"
  )
  lst = tmp_path / "list.txt"
  out = tmp_path / "out.npz"
  args = [
    "build",
    f"--label_maps={root}",
    f"--list={lst}",
    f"--out={out}",
    "--label_format=ade20k",
  ]

  def build_error(*fragments):
    return assert_user_error(run_cli("scenejax.prototype", *args), *fragments)

  lst.write_text("a.png 0\n")
  build_error("a.png: value 151 is not an id of label format 'ade20k'")
  lst.write_text("rgb.png 0\n")
  build_error("rgb.png: label map must be a single-channel")
  lst.write_text("lossy.jpg 0\n")
  build_error("lossy.jpg: label maps must be stored losslessly")
  lst.write_text("missing.png 0\n")
  build_error("missing.png (listed in")
  lst.write_text("a.png kitchen\n")
  build_error("list.txt:1: scene label 'kitchen'")
  assert not out.exists()
  # The id convention must be named: a map of 0..149 is a valid ADE20K map
  # that would silently lose "wall".
  lst.write_text("a.png 0\n")
  assert_user_error(
    run_cli("scenejax.prototype", *args[:-1]),
    "build --label_maps needs --label_format",
  )
  assert_user_error(
    run_cli("scenejax.prototype", "bild"),
    "give a command: one of build, fetch, import_xlsx, show",
  )
  assert_user_error(run_cli("scenejax.prototype", "show", "--top=x"), "--top")


def test_read_class_names_refuses_bad_lists(tmp_path):
  path = tmp_path / "names.txt"
  path.write_bytes("\ufeffkitchen\nbath\n".encode("utf-8"))
  assert prototype.read_class_names(path) == ["kitchen", "bath"]  # BOM
  path.write_text("kitchen\nbath\nkitchen\n")
  with pytest.raises(
    PrototypeError,
    match=r"names.txt:3: class 'kitchen' is "
    r"listed twice \(first on line 1\)",
  ):
    prototype.read_class_names(path)
  path.write_text("kitchen 0\nbath\n")
  with pytest.raises(
    PrototypeError, match="names.txt:2: some lines end in an index"
  ):
    prototype.read_class_names(path)
  path.write_text("kitchen 0\nbath 0\n")
  with pytest.raises(PrototypeError, match="index 0 given twice"):
    prototype.read_class_names(path)


def test_xlsx_cells_are_addressed_as_in_the_sheet(tmp_path):
  """An empty row inside the grid is reported at its own address, and a
  formula without a cached value is explained."""
  import openpyxl

  book = openpyxl.Workbook()
  sheet = book.active
  sheet["A1"], sheet["B1"] = 1.0, 0.5
  sheet["A3"], sheet["B3"] = 0.5, 1.0  # row 2 empty
  path = tmp_path / "gap.xlsx"
  book.save(path)
  with pytest.raises(PrototypeError, match=r"gap.xlsx: cell A2 is empty"):
    prototype.read_xlsx_matrix(path)
  sheet["A2"], sheet["B2"] = "=1/2", "=1/2"  # formulas, no cached values
  book.save(path)
  with pytest.raises(PrototypeError, match="formula without a saved value"):
    prototype.read_xlsx_matrix(path)


def test_label_map_files_in_lossy_formats_are_refused(tmp_path):
  path = tmp_path / "m.jpg"
  Image.fromarray(np.full((8, 8), 3, np.uint8), mode="L").save(path)
  with pytest.raises(
    DatasetError, match="m.jpg: label maps must be stored losslessly"
  ):
    prototype.presence_vector(str(path))


# --- The authors' published matrices as published:DATASET/METRIC. ---------
# conftest points SCENEJAX_PUBLISHED_SOURCE at the reference copies and
# SCENEJAX_CACHE at a temporary directory.


def _published(dataset, metric="cosine"):
  return prototype.load_prototype(f"published:{dataset}/{metric}")


def _names_key(name):
  """'/b/bakery/shop' and 'bakery' -> 'bakery'; 'dining_room' and
  'diningroom' -> 'diningroom' (MIT-67 writes some names without '_')."""
  name = name[3:] if name.startswith("/") else name
  return name.split("/")[0].replace("_", "")


@pytest.mark.parametrize(
  "dataset,file",
  [
    ("mit67", "MIT67"),
    ("sun397", "SUN397"),
    ("places365_7", "Places_7"),
    ("places365_14", "Places_14"),
  ],
)
@pytest.mark.parametrize(
  "metric,suffix", [("cosine", "cosine"), ("euclidean", "Euclidean")]
)
def test_published_prototypes_are_the_authors_matrices(
  dataset, file, metric, suffix, shared
):
  proto = _published(dataset, metric)
  with np.load(PROTOTYPES / f"{file}_SP_{suffix}.npz") as npz:
    expected = npz["similarity"]
  np.testing.assert_allclose(proto.similarity, expected, rtol=1e-7, atol=1e-7)
  assert proto.metric == metric and proto.format_version == 1
  assert len(proto.class_names) == expected.shape[0]
  assert list(proto.class_names) == sorted(proto.class_names)
  assert f"SP/{file}_SP_{suffix}.xlsx sha256:" in proto.provenance


def test_published_class_names_are_the_datasets_label_order(shared):
  from scenejax.datasets import PLACES365_14, mit67

  assert _published("mit67").class_names == mit67.CLASS_NAMES
  assert _published("places365_14").class_names == PLACES365_14
  # SUN397: TFDS's labels, in SAS-Net's order (its list writes '-' for '/').
  sasnet = [
    line.split()[0]
    for line in open(SASNET / "SUN397_scene_names.txt")
    if line.strip()
  ]
  ours = _published("sun397").class_names
  assert [n[:3] + n[3:].replace("/", "-") for n in ours] == sasnet


def test_published_class_order_is_consistent_across_datasets(shared):
  """The evidence for the assumed (sorted) order: the rows of classes two
  datasets share agree, which a wrong order would destroy."""
  from scipy.stats import spearmanr

  # Places365-7's classes are five of Places365-14's, from the same images:
  # Algorithm 1 gives them the same class vectors, so equal entries.
  for metric in ("cosine", "euclidean"):
    small, large = (
      _published("places365_7", metric),
      _published("places365_14", metric),
    )
    common = [n for n in small.class_names if n in large.class_names]
    assert len(common) == 5
    i = [small.class_names.index(n) for n in common]
    j = [large.class_names.index(n) for n in common]
    np.testing.assert_allclose(
      small.similarity[np.ix_(i, i)], large.similarity[np.ix_(j, j)], atol=1e-6
    )
  # The order [SP] §4.2 lists Places365-14's classes in matches nothing.
  listed = (
    "balcony/interior", "bedroom", "dining_room", "home_office", "kitchen",
    "living_room", "staircase", "bathroom", "closet", "garage/indoor",
    "home_theater", "laundromat", "playroom", "wet_bar",
  )  # fmt: skip
  j = [listed.index(n) for n in common]
  small, large = _published("places365_7"), _published("places365_14")
  assert (
    np.abs(
      small.similarity[np.ix_(i, i)] - large.similarity[np.ix_(j, j)]
    ).max()
    > 0.1
  )
  # MIT-67 and SUN397 share 41 class names: their pairwise similarities
  # correlate far beyond what random class orders give.
  a, b = _published("mit67"), _published("sun397")
  keys_b = {_names_key(n): k for k, n in enumerate(b.class_names)}
  pairs = [
    (k, keys_b[_names_key(n)])
    for k, n in enumerate(a.class_names)
    if _names_key(n) in keys_b
  ]
  assert len(pairs) == 41
  ia, ib = map(np.array, zip(*pairs))
  upper = np.triu_indices(len(pairs), 1)

  def rho(ia, ib):
    return spearmanr(
      a.similarity[np.ix_(ia, ia)][upper], b.similarity[np.ix_(ib, ib)][upper]
    )[0]

  observed = rho(ia, ib)
  rng = np.random.default_rng(0)
  null = [
    rho(rng.choice(67, len(pairs), replace=False), ib) for _ in range(200)
  ]
  assert observed > 0.75 and observed > max(null) + 0.3, (observed, max(null))


def test_published_prototypes_show_the_papers_examples(shared):
  """[SP] Fig. 1: auditorium is most like concert hall, less like bedroom;
  Fig. 3 (Places365-14): bedroom nearer living room than kitchen, kitchen
  nearer dining room than bedroom."""
  mit = _published("mit67")
  s, n = mit.similarity, list(mit.class_names)
  row = s[n.index("auditorium")].copy()
  row[n.index("auditorium")] = -1
  assert n[int(np.argmax(row))] == "concert_hall"
  assert row[n.index("concert_hall")] > row[n.index("bedroom")]
  p14 = _published("places365_14")
  s, n = p14.similarity, list(p14.class_names)

  def sim(x, y):
    return s[n.index(x), n.index(y)]

  assert sim("bedroom", "living_room") > sim("bedroom", "kitchen")
  assert sim("kitchen", "dining_room") > sim("kitchen", "bedroom")


def test_published_fetch_verifies_the_checksum_and_caches(
  tmp_path, monkeypatch, shared
):
  from scenejax.prototype import published

  source = tmp_path / "mirror"
  source.mkdir()
  good = (PROTOTYPES / "Places_7_SP_cosine.xlsx").read_bytes()
  bad = good[:100] + bytes([good[100] ^ 1]) + good[101:]
  (source / "Places_7_SP_cosine.xlsx").write_bytes(bad)
  monkeypatch.setenv(published.CACHE_ENV, str(tmp_path / "cache"))
  monkeypatch.setenv(published.SOURCE_ENV, str(source))
  want = published.FILES["places365_7", "cosine"].sha256
  import hashlib

  got = hashlib.sha256(bad).hexdigest()
  with pytest.raises(
    PrototypeError,
    match=rf"mirror/Places_7_SP_cosine.xlsx: sha256 {got}, expected {want}",
  ):
    prototype.load_prototype("published:places365_7/cosine")
  assert not (tmp_path / "cache" / "prototypes").exists() or not os.listdir(
    tmp_path / "cache" / "prototypes"
  )
  # The right file: fetched once; later loads need no source at all.
  (source / "Places_7_SP_cosine.xlsx").write_bytes(good)
  first = prototype.load_prototype("published:places365_7/cosine")
  (source / "Places_7_SP_cosine.xlsx").unlink()
  again = prototype.load_prototype("published:places365_7/cosine")
  np.testing.assert_array_equal(first.similarity, again.similarity)
  with pytest.raises(
    PrototypeError, match=r"Places_7_SP_Euclidean.xlsx: cannot read"
  ):
    prototype.load_prototype("published:places365_7/euclidean")
  with pytest.raises(PrototypeError, match=r"DATASET one of mit67, sun397"):
    prototype.load_prototype("published:mit68/cosine")


def test_a_published_recipe_needs_no_prototype_file(shared):
  """configs/mit67_resnet50.py (and its :euclidean variant) load the
  authors' matrix by name, checked against the dataset's classes."""
  import types

  from configs import mit67_resnet50
  from scenejax import config_lib
  from scenejax.datasets import mit67
  from scenejax.errors import ConfigError
  from scenejax.tasks import classification

  data = types.SimpleNamespace(class_names=mit67.CLASS_NAMES, spec=None)
  for arg, metric in (("gls,bcl", "cosine"), ("gls,euclidean", "euclidean")):
    config = mit67_resnet50.get_config(arg)
    config_lib.validate(config)
    proto = classification.prototype_for(config, data, workdir=None)
    assert proto.num_classes == 67 and proto.metric == metric
  config = mit67_resnet50.get_config()
  config.prototype.path = "published:sun397/{metric}"
  with pytest.raises(ConfigError, match="prototype of sun397, but config"):
    config_lib.validate(config)


def test_fetch_command(tmp_path, shared):
  out = tmp_path / "p7.npz"
  proc = run_cli(
    "scenejax.prototype", "fetch", "published:places365_7/euclidean",
    f"--out={out}",
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr
  proto = prototype.load_prototype(out)
  assert proto.metric == "euclidean" and proto.num_classes == 7
  assert_user_error(
    run_cli("scenejax.prototype", "fetch", "places7.npz"),
    "fetch takes published:DATASET/METRIC",
  )
