"""Training: the loop (`loop`), orbax checkpoints and the workdir
(`checkpoints`), the optimizer and its parameter groups (`optim`)."""
