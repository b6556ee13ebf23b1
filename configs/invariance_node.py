r"""Spiral neural ODEs with and without the CBF invariance layer (official settings of Weixy21/InvarianceNODE).

    python -m train --config configs/invariance_node.py:neural-ode-spiral --workdir runs/neural-ode-spiral
    zoo ship runs/neural-ode-spiral/export [--replace]
    python -m train --config configs/invariance_node.py:invariance-node-spiral --workdir runs/invariance-node-spiral
    zoo ship runs/invariance-node-spiral/export [--replace]
    python -m train --config configs/invariance_node.py:invariance-node-spiral,smoke --workdir /tmp/smoke

Each export's card carries the baseline-vs-invariant table, with the other variant's column from its shipped
metrics (`card_sections(model, metrics, siblings)`): ship the baseline before training the invariant model.

Official spiral/train.py: RMSprop lr 1e-3 (torch defaults: alpha 0.99, eps 1e-8 outside the square root),
batch of 20 random windows of batch_time 10 from the 1000-sample trajectory, L1 loss, 2100 iterations
(here 43 epochs of the 990 windows = 2107 steps, each window once per epoch).
"""

from zoo import training

VARIANTS = {"invariance-node-spiral": "invariance-node-spiral", "invariant": "invariance-node-spiral",
            "neural-ode-spiral": "neural-ode-spiral", "baseline": "neural-ode-spiral"}


def get_config(arg: str = "invariance-node-spiral"):
  variant, smoke = training.parse_arg(arg, "invariance-node-spiral")
  c = training.base_config(model=training.choose(variant, VARIANTS, "configs/invariance_node.py"), dataset="spiral")
  c.batch_size = 20
  c.epochs = 43
  c.optimizer.name = "rmsprop"
  c.optimizer.lr = 1e-3
  c.optimizer.kwargs.decay = 0.99        # torch.optim.RMSprop alpha
  c.optimizer.kwargs.eps = 1e-8
  c.optimizer.kwargs.eps_in_sqrt = False  # torch adds eps to sqrt(v)
  c.eval_every_epochs = 2               # the full-trajectory L1 fluctuates: evaluate often, keep the best
  c.checkpoint_every_steps = 250
  c.best_metric = "l1_trajectory"         # L1 of the full 1000-sample rollout from y0 = [2, 0]
  if smoke:
    c = training.shrink(c)
    c.batch_size = 4
    c.max_train_examples = 8
  return c
