"""The device mesh: one data-parallel axis over every device of every
process."""

import jax


def data_parallel_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh of every device of every process, axis "data".

  The axis is `Auto` (GSPMD propagates shardings through the step), so the
  loss kernels stay sharding-agnostic: no out_sharding annotations on the
  gathers S[y_i, y_j].
  """
  return jax.make_mesh(
    (jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,)
  )
