r"""WaveMix / WaveMix-Lite, and its W4A4 rotation-quantized form (QuaRot-style, post-training).

    python -m train --config configs/wavemix.py:digits --workdir runs/wavemix-lite-digits
    python -m train --config configs/wavemix.py:digits-rotate-rtn4 --workdir runs/wavemix-lite-digits-rotate-rtn4
    python -m train --config configs/wavemix.py:fashion-mnist --workdir runs/wavemix-lite-fashion-mnist
    python -m train --config configs/wavemix.py:fashion-mnist-rotate-rtn4 --workdir runs/wavemix-lite-fashion-mnist-rotate-rtn4
    python -m train --config configs/wavemix.py:fashion-mnist-strided --workdir runs/wavemix-lite-fashion-mnist-strided
    python -m train --config configs/wavemix.py:mnist --workdir runs/wavemix-lite-mnist        # needs MNIST
    python -m train --config configs/wavemix.py:cifar10 --workdir runs/wavemix-cifar10         # needs CIFAR-10

`fashion-mnist-rotate-rtn4` trains its own float form (strided stem: the float model's patchify stem cannot be
rotated) for the fashion-mnist epochs, then quantizes it at export. `fashion-mnist-strided` is that float form
as a model of its own (what benchmarks/rotate_{rtn4,gptq4}.py start from); the shipped one is the rotate-rtn4 run's
own weights: its workdir's checkpoints copied into the strided run's workdir, which the trainer resumes at the last
step and exports without training. `digits-rotate-rtn4` trains nothing (epochs = 0): it starts from the shipped `wavemix-lite-digits`
(`init_from`), builds the float form that carries the recipe (`model_overrides.quantized = False`), and the family's
`export` hook folds the Hadamard rotations in and quantizes (4-bit weights and activations) before the trainer
evaluates, verifies and saves. The official recipes train with Lion (lr 1e-4, wd 1e-2) or AdamW (lr 1e-3, wd 0.01),
batch 512, TrivialAugment and flips, until 20 epochs without improvement; here AdamW with cosine decay for a fixed
number of epochs and no augmentation (the generic trainer).

Cards: the benchmark tables join a card when its export is shipped (with the titles the shipped cards use):

    zoo ship runs/wavemix-lite-digits/export --replace \
      --section "$VS_RESNET=benchmarks/results/wavemix_vs_resnet.md" --section "$RTN4=benchmarks/results/rotate_rtn4.md"

with VS_RESNET="WaveMix vs ResNet on this machine (benchmarks/wavemix_vs_resnet.py)" and
RTN4="W4A4 round-to-nearest with and without rotation (benchmarks/rotate_rtn4.py)".
"""

from zoo import training

_VARIANTS = {
    "digits": ("wavemix-lite-digits", "digits"),
    "digits-rotate-rtn4": ("wavemix-lite-digits-rotate-rtn4", "digits"),
    "fashion-mnist": ("wavemix-lite-fashion-mnist", "fashion_mnist"),
    "fashion-mnist-rotate-rtn4": ("wavemix-lite-fashion-mnist-rotate-rtn4", "fashion_mnist"),
    "fashion-mnist-strided": ("wavemix-lite-fashion-mnist-strided", "fashion_mnist"),
    "mnist": ("wavemix-lite-mnist", "mnist"),
    "cifar10": ("wavemix-cifar10", "cifar10"),
}


def get_config(arg: str = "digits"):
  variant, smoke = training.parse_arg(arg, "digits")
  model, dataset = training.choose(variant, _VARIANTS, "configs/wavemix.py")
  c = training.base_config(model=model, dataset=dataset)
  c.best_metric = "accuracy"
  c.best_mode = "max"
  c.optimizer.name = "adamw"
  c.optimizer.lr = 3e-3 if dataset == "digits" else 1e-3
  c.optimizer.kwargs.weight_decay = 0.01   # AdamW's decoupled decay (the official AdamW setting)
  c.optimizer.schedule = "cosine"
  if dataset == "digits":
    c.batch_size = 64                      # 1438 training images: 22 steps per epoch
    c.epochs = 60
    c.eval_every_epochs = 10
    c.checkpoint_every_steps = 500
  elif dataset == "fashion_mnist":          # 60,000 training images, batch 128: 469 steps per epoch
    c.batch_size = 128
    c.epochs = 3                           # the CPU budget of the shipped run (2 shared cores), not convergence
    c.eval_every_epochs = 1
    c.checkpoint_every_steps = 200
  else:
    c.batch_size = 256
    c.epochs = 30 if dataset == "mnist" else 200
    c.eval_every_epochs = 5
    c.checkpoint_every_steps = 1000
  if variant == "fashion-mnist-rotate-rtn4":
    # The shipped float model's patchify stem cannot be rotated, so this run trains its own float form (strided
    # stem, `quantized = False`) from scratch and the family's `export` rotates and quantizes it before saving.
    c.model_overrides.quantized = False
  elif variant.endswith("rotate-rtn4"):    # post-training quantization of the shipped float model
    c.init_from = "wavemix-lite-digits"
    c.model_overrides.quantized = False
    c.epochs = 0
    c.optimizer.lr = 0.0
    c.optimizer.schedule = "constant"
    c.optimizer.kwargs = {}
  return training.shrink(c) if smoke else c
