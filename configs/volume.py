r"""Volume-preserving network on the pendulum's time-0.5 flow map (float64).

    python -m train --config configs/volume.py:pendulum --workdir runs/volnet-pendulum

The paper has no volume-preserving experiment; these settings follow its mass-preserving one (Adam, lr 1e-2
decayed ×0.1 in steps, float64, small batches), scaled to the 1600 training pairs.
"""

from zoo import training


def get_config(arg: str = "pendulum"):
  variant, smoke = training.parse_arg(arg, "pendulum")
  model = training.choose(variant, {"pendulum": "volnet-pendulum"}, "configs/volume.py")
  c = training.base_config(model=model, dataset="pendulum")
  c.batch_size = 32                      # 50 steps per epoch
  c.epochs = 100
  c.optimizer.name = "adam"
  c.optimizer.lr = 1e-2
  c.optimizer.schedule = "step"
  c.optimizer.step_epochs = 35
  c.optimizer.step_factor = 0.1
  c.eval_every_epochs = 25
  c.checkpoint_every_steps = 1000
  c.best_metric = "test_mse"
  return training.shrink(c) if smoke else c
