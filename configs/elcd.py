r"""ELCD on LASA, the official demo's settings (seanjaffe1/Extended-Linearized-Contracting-Dynamics, lasa_demo.ipynb):
Adam lr 1e-3, batch 100, 100 epochs, the first 3 demonstrations; the model is `elcd-VARIANT` of the registry.

    python -m train --config configs/elcd.py:lasa2d-angle --workdir runs/elcd-lasa2d-angle
    python -m train --config configs/elcd.py:lasa4d --workdir runs/elcd-lasa4d
    python -m train --config configs/elcd.py:lasa8d --workdir runs/elcd-lasa8d
    python -m train --config configs/elcd.py:lasa8d,smoke --workdir /tmp/smoke            # seconds

VARIANT is any registered `elcd-*` name without the prefix (`lasa2d-angle`, `lasa2d-sshape`, ..., `lasa4d`,
`lasa8d`).
"""

from zoo import registry, training


def get_config(arg: str = "lasa8d"):
  variant, smoke = training.parse_arg(arg, "lasa8d")
  name = training.choose(variant, {n.removeprefix("elcd-"): n for n in registry.list_models("elcd-*")},
                         "configs/elcd.py")
  c = training.base_config(model=name, dataset=registry.get_spec(name).dataset)
  c.optimizer.name = "adam"            # official: torch.optim.Adam(lr=1e-3), MSELoss on velocities,
  c.optimizer.lr = 1e-3                # DataLoader(batch_size=100, shuffle=True), 100 epochs, final model kept
  c.batch_size = 100
  c.epochs = 100
  c.eval_every_epochs = 100            # evaluate (rollouts) at the end only: the exported model is the last one,
  c.checkpoint_every_steps = 500       # as the official demo (no selection on the test demonstrations)
  c.best_metric = "loss"
  return training.shrink(c) if smoke else c
