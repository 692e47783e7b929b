"""Independent float64 NumPy references, written from the papers' equations.

Deliberately literal (loops over classes, pairs and semantic ids, as the
papers print them) and sharing no code with scenejax, so the tests compare two
independent readings of the same equations.

[SP]  Song et al., Pattern Recognition 2024, arXiv:2308.05896 (similarity
      prototype, GLS, BCL)
[PCL] Chen et al., NeurIPS 2021 (pairwise consistency)
"""

import math

import numpy as np


def algorithm1_class_representation(
  label_maps, scene_labels, num_classes, num_semantic
):
  """[SP] Algorithm 1 as printed: for c, for n, for l: if l in M: s(l) = 1."""
  reps = np.zeros((num_classes, num_semantic))
  for c in range(num_classes):
    maps = [m for m, y in zip(label_maps, scene_labels) if y == c]
    total = np.zeros(num_semantic)
    for m in maps:
      s = np.zeros(num_semantic)
      for l in range(1, num_semantic + 1):
        if (np.asarray(m) == l).any():
          s[l - 1] = 1
      total += s
    reps[c] = total / len(maps)  # Eq. 1
  return reps


def similarity(reps, metric):
  """[SP] Eq. 2 (cosine) and Eq. 3-4 (exp(-euclidean)), pair by pair."""
  num = len(reps)
  out = np.zeros((num, num))
  for i in range(num):
    for j in range(num):
      a, b = np.asarray(reps[i], float), np.asarray(reps[j], float)
      if metric == "cosine":
        out[i, j] = a.dot(b) / (math.sqrt(a.dot(a)) * math.sqrt(b.dot(b)))
      else:
        out[i, j] = math.exp(-math.sqrt(sum((a - b) ** 2)))
  return out


def value_start(s):
  """[SP] Eq. 5 + Eq. 8: max of the row-normalised S."""
  s = np.asarray(s, float)
  return (s / (s @ np.ones_like(s))).max()


def algorithm2_gls(s, paper_epoch, step=20, final=0.99):
  """[SP] Algorithm 2 for one (1-based) epoch, as printed.

  `value > final` is tested with a 1e-12 slack: at epoch STEP + 1 the
  printed formula gives value == final up to rounding, and the paper's
  intent (Fig. 4, "after STEP epochs ... hard label") is soft there.
  """
  s = np.asarray(s, float)
  num = len(s)
  vs = value_start(s)
  value = vs + (final - vs) * (paper_epoch - 1) / step
  s1 = s.copy()
  for c in range(num):
    s1[c, c] = (
      value / (1 - value) * sum(s[i, c] for i in range(num) if i != c)
    )  # Eq. 7-8
  s1_norm = s1 / (s1 @ np.ones((num, num)))  # Eq. 5
  if value > final + 1e-12:
    s1_norm = np.eye(num)
  return s1_norm


def eq9_cross_entropy(logits, targets, s1_norm):
  """[SP] Eq. 9 with the soft label as a row: -1/B Σ_i Σ_j
  S1_norm[target_i, j] log p[i, j].

  Eq. 9 prints S1_norm[j, target_i] (a column), but S1_norm is
  row-normalised (Eq. 5) and not symmetric, so a column is not a
  distribution; Algorithm 2 calls the rows the soft labels.
  """
  logits = np.asarray(logits, float)
  total = 0.0
  for i, t in enumerate(targets):
    z = logits[i] - logits[i].max()
    log_p = z - math.log(np.exp(z).sum())
    total -= sum(s1_norm[t, j] * log_p[j] for j in range(len(log_p)))
  return total / len(targets)


def pair_similarity(p, metric):
  """p_matrix of [SP] §3.4, pair by pair."""
  p = np.asarray(p, float)
  b = len(p)
  out = np.zeros((b, b))
  for i in range(b):
    for j in range(b):
      if metric == "cosine":
        # A cosine is at most 1; without the min, rounding makes
        # cos(p, p) = 1 + 2e-16 > S[y, y] = 1, which "nonzero" would count.
        out[i, j] = min(
          p[i].dot(p[j]) / (np.linalg.norm(p[i]) * np.linalg.norm(p[j])), 1.0
        )
      else:
        out[i, j] = math.exp(-math.sqrt(((p[i] - p[j]) ** 2).sum()))
  return out


def bcl(p, y, s, metric="cosine", reduction="mean_inter", pairing="gather"):
  """[SP] Eq. 10-15 with the §4.3.2 reductions, pair by pair."""
  s = np.asarray(s, float)
  num, b = len(s), len(y)
  pm = pair_similarity(p, metric)
  m = [
    max([s[c, k] for k in range(num) if k != c], default=0.0)
    for c in range(num)
  ]  # Eq. 14
  s2 = np.diag(m)
  inter = np.zeros((b, b))
  intra = np.zeros((b, b))
  for i in range(b):
    for j in range(b):
      if pairing == "gather":
        thr = s[y[i], y[j]]
        thr2 = m[y[i]] if y[i] == y[j] else 0.0
      else:  # Eq. 11
        thr = sum(s[y[i], k] * s[y[j], k] for k in range(num))
        thr2 = sum(s2[y[i], k] * s2[y[j], k] for k in range(num))
      inter[i, j] = max(pm[i, j] - thr, 0.0)  # Eq. 12-13
      intra[i, j] = max(thr2 - pm[i, j], 0.0)  # Eq. 15
  mat = inter + intra if reduction.endswith("inter_intra") else inter
  if reduction.startswith("mean"):
    return mat.sum() / (b * b)
  count = (mat > 0).sum()
  return mat.sum() / count if count else 0.0


def classic_cl(p, y, metric="cosine"):
  """[SP] Eq. 10 with expectations 1 (same class) / 0 (different)."""
  pm = pair_similarity(p, metric)
  b = len(y)
  total = 0.0
  for i in range(b):
    for j in range(b):
      gamma = 1.0 if y[i] == y[j] else 0.0
      total += (1 - gamma) * max(pm[i, j], 0) + gamma * max(1 - pm[i, j], 0)
  return total / (b * b)


def softmax(z):
  z = np.asarray(z, float)
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def pcl(main, side, mod, g, alpha=1.0, beta=2.0):
  """[PCL] Eq. 3 with the KL sign corrected: Σ q log(q / p) >= 0."""
  p, r, q = softmax(main), softmax(side), softmax(mod)
  g = np.asarray(g, float)
  b = len(g)
  l_main = -sum((g[i] * np.log(p[i])).sum() for i in range(b)) / b
  l_side = -sum((g[i] * np.log(r[i])).sum() for i in range(b)) / b
  l_mod = -sum((g[i] * np.log(q[i])).sum() for i in range(b)) / b
  l_kl = sum((q[i] * np.log(q[i] / p[i])).sum() for i in range(b)) / b
  return (
    l_main + l_side + alpha * l_mod + beta * l_kl,
    dict(main=l_main, side=l_side, mod=l_mod, kl=l_kl),
  )


# --------------------------------------------------------------------------
# Segmentation losses, one pixel / one pair at a time.


def focal_loss(logits, labels, weights=None, gamma=2.0):
  """[FL] Eq. 5 with alpha_t = w[y]: mean over pixels with id 1..K of
  -w (1 - p_y)^gamma log p_y; logits (..., K), labels (...) ids."""
  logits = np.asarray(logits, np.float64).reshape(-1, np.shape(logits)[-1])
  labels = np.asarray(labels).reshape(-1)
  k = logits.shape[1]
  total, count = 0.0, 0
  for z, y in zip(logits, labels):
    if not 1 <= y <= k:
      continue
    p = np.exp(z - z.max())
    p /= p.sum()
    w = 1.0 if weights is None else float(weights[y - 1])
    total += -w * (1.0 - p[y - 1]) ** gamma * np.log(p[y - 1])
    count += 1
  return total / count if count else 0.0


def margin_contrastive(embeddings, labels, valid, margin=1.0):
  """[HCL] Eq. 4 (no 1/2 factors): mean over ordered pairs i != j of
  valid pixels of one image of d^2 (same class) or max(0, m - d)^2."""
  total, count = 0.0, 0
  for e, y, v in zip(embeddings, labels, valid):
    e = np.asarray(e, np.float64)
    for i in range(len(e)):
      for j in range(len(e)):
        if i == j or not (v[i] and v[j]):
          continue
        d = np.sqrt(np.sum((e[i] - e[j]) ** 2))
        total += d**2 if y[i] == y[j] else max(0.0, margin - d) ** 2
        count += 1
  return total / count if count else 0.0


def supcon(embeddings, labels, valid, temperature=0.1):
  """[SupCon] Eq. 2 (L^sup_out) within each image, mean over anchors with
  at least one positive."""
  losses = []
  for e, y, v in zip(embeddings, labels, valid):
    e = np.asarray(e, np.float64)
    z = e / np.linalg.norm(e, axis=1, keepdims=True)
    idx = [i for i in range(len(z)) if v[i]]
    for i in idx:
      others = [a for a in idx if a != i]
      positives = [p for p in others if y[p] == y[i]]
      if not positives:
        continue
      denom = sum(np.exp(z[i] @ z[a] / temperature) for a in others)
      losses.append(
        -np.mean(
          [np.log(np.exp(z[i] @ z[p] / temperature) / denom) for p in positives]
        )
      )
  return float(np.mean(losses)) if losses else 0.0
