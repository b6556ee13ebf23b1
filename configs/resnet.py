r"""ResNet18 (CIFAR stem), float and k-means-quantized by DKM / IDKM / IDKM-JFB.

    python -m train --config configs/resnet.py:digits --workdir runs/resnet18-digits
    python -m train --config configs/resnet.py:digits-idkm-b2 --workdir runs/resnet18-digits-idkm-b2
    python -m train --config configs/resnet.py:digits-dkm-b2 --workdir runs/resnet18-digits-dkm-b2     # comparison
    python -m train --config configs/resnet.py:fashion-mnist --workdir runs/resnet18-fashion-mnist           # make data
    python -m train --config configs/resnet.py:fashion-mnist-idkm-b2 --workdir runs/resnet18-fashion-mnist-idkm-b2
    python -m train --config configs/resnet.py:cifar10 --workdir runs/resnet18-cifar10                 # needs CIFAR-10

Variants: `digits`, `fashion-mnist` and `cifar10` (float); `{digits,fashion-mnist,cifar10}-{idkm,dkm,jfb}-b{1,2,4}`: clustering-aware
fine-tuning of the float model (`init_from`) with each method at b bits. All methods share every setting
(b, d = 1, τ = 1e-4, t = 5, ε = 1e-4), so the runs differ only in how the gradient passes the clustering. The
quantized runs train the model in its training form (`model_overrides.packed = False`: float kernels +
codebooks); the registered variant is the packed form (b-bit indices + codebooks) that `zoo.quant.export`
makes of it (the family's `export` hook, applied by the trainer before it saves). `digits-dkm-b2` and
`digits-jfb-b2` have their own registered variants (the comparison that ships); the other dkm/jfb runs reuse the
registered `resnet18-*-idkm-b*` name with `quant.method` overridden (comparison runs, not shipped).

Cards: the trainer's export carries the Storage section; the benchmark tables join it when it is shipped, by
`python benchmarks/idkm_accuracy.py --ship [NAME ...]` (re-exports each run, adds the tables and the memory plot,
embeds it) or by hand (with the titles the shipped cards use):

    zoo ship runs/resnet18-digits-idkm-b2/export --replace \
      --section "$ACCURACY=benchmarks/results/idkm_accuracy.md" \
      --section "$MEMORY=benchmarks/results/idkm_memory_card.md"

with ACCURACY="Accuracy: float vs DKM vs IDKM vs IDKM-JFB (benchmarks/idkm_accuracy.py)" and
MEMORY="Memory: DKM vs IDKM vs IDKM-JFB (benchmarks/idkm_memory.py)".
"""

from zoo import registry, training
from zoo.models import resnet

METHODS = {"idkm": "idkm", "dkm": "dkm", "jfb": "idkm-jfb"}
DATASETS = ("digits", "fashion-mnist", "cifar10")
# "digits" -> ("digits", None, None); "digits-jfb-b2" -> ("digits", "idkm-jfb", 2)
VARIANTS = {**{dataset: (dataset, None, None) for dataset in DATASETS},
            **{f"{dataset}-{short}-b{bits}": (dataset, method, bits)
               for dataset in DATASETS for short, method in METHODS.items() for bits in resnet.BITS}}


def get_config(arg: str = "digits"):
  variant, smoke = training.parse_arg(arg, "digits")
  dataset, method, bits = training.choose(variant, VARIANTS, "configs/resnet.py")
  name = f"resnet18-{dataset}"
  if method:  # the method's own registered variant where one exists, else the IDKM one (quant.method overridden)
    name = resnet.quantized_name(dataset, method, bits)
    if name not in registry.list_models():
      name = resnet.quantized_name(dataset, "idkm", bits)
  c = training.base_config(model=name, dataset=resnet.DATA_NAMES.get(dataset, dataset))
  c.best_metric = "accuracy"
  c.best_mode = "max"
  c.init_from = ""                     # a zoo source whose weights start the run (matching paths and shapes)
  if dataset == "digits":
    c.batch_size = 64                  # 1438 training images: 22 steps per epoch
    c.epochs = 30
    c.optimizer.name = "adam"
    c.optimizer.lr = 3e-3
    c.optimizer.schedule = "cosine"
    c.optimizer.weight_decay = 5e-4
    c.eval_every_epochs = 5
    c.checkpoint_every_steps = 200
  elif dataset == "fashion-mnist":     # 60,000 training images, batch 128: 469 steps per epoch
    c.batch_size = 128
    c.epochs = 3                       # the 2-core CPU budget, not convergence
    c.optimizer.name = "adam"
    c.optimizer.lr = 3e-3
    c.optimizer.schedule = "cosine"
    c.optimizer.weight_decay = 5e-4
    c.eval_every_epochs = 1
    c.checkpoint_every_steps = 200
  else:                                # the usual CIFAR ResNet18 recipe (SGD 0.1, momentum, wd 5e-4, cosine)
    c.batch_size = 128
    c.epochs = 200
    c.optimizer.name = "sgd"
    c.optimizer.lr = 0.1
    c.optimizer.kwargs.momentum = 0.9
    c.optimizer.schedule = "cosine"
    c.optimizer.weight_decay = 5e-4
    c.eval_every_epochs = 5
    c.checkpoint_every_steps = 1000
  if method:
    c.init_from = f"resnet18-{dataset}"  # clustering-aware fine-tuning starts from the float model
    c.model_overrides.packed = False     # the training form; zoo.quant.export packs it for shipping
    c.model_overrides.quant = dict(resnet.QUANT, method=method, bits=bits)
    c.optimizer.name = "adam"
    c.optimizer.lr = 1e-4
    c.optimizer.kwargs = {}
    c.optimizer.schedule = "cosine"
    c.optimizer.weight_decay = 0.0
    c.epochs = {"digits": 8, "fashion-mnist": 1}.get(dataset, 30)
    c.eval_every_epochs = {"digits": 2, "fashion-mnist": 1}.get(dataset, 5)
  return training.shrink(c) if smoke else c
