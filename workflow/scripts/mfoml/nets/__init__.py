"""Networks: models with named probe layers, the training loop, checkpoints, activation dumps,
training objectives.

- :mod:`mfoml.nets.models`: MLP, Conv, Conv1D and ResNet18 with named probe layers;
- :mod:`mfoml.nets.spec`: layer names of a model spec without torch (configuration checks);
- :mod:`mfoml.nets.training`: the training loop (per-epoch metrics, resumable);
- :mod:`mfoml.nets.checkpoints`: checkpoint files (reading with clear errors, resuming);
- :mod:`mfoml.nets.activations`: ordered per-layer activation dumps (memory-mappable float16);
- :mod:`mfoml.nets.dumps`: reading those dumps (numpy only, no torch);
- :mod:`mfoml.nets.losses`: the SVSL loss (imports :mod:`mfoml.collapse.accumulators`).

Names are loaded on first use (``import mfoml.nets`` does not import torch).
"""

from mfoml._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "activations": ("dump_activations",),
        "dumps": ("ActivationDump", "open_activations"),
        "checkpoints": ("CheckpointError", "list_checkpoints", "load_checkpoint"),
        "losses": ("SVSLLoss",),
        "models": ("ProbedModel", "build_model"),
        "training": ("ExtraLoss", "TrainConfig", "train"),
    },
)
