"""nnx-zoo: Flax NNX models with structural guarantees, and a checkpoint hub."""
