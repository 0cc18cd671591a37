"""Networks: models with named probe layers, the training loop, checkpoints, activation dumps,
training objectives.

- :mod:`mfoml.nets.models`: MLP, Conv, Conv1D and ResNet18 with named probe layers;
- :mod:`mfoml.nets.transformer`, :mod:`mfoml.nets.hf`: the text encoders (from scratch, and
  HuggingFace ``transformers``); :mod:`mfoml.nets.architectures`: ``build_model`` for every
  architecture; :mod:`mfoml.nets.pretrain`: masked-language-model pretraining;
  :mod:`mfoml.nets.optim`: AdamW parameter groups and the warm-up + linear-decay schedule;
- :mod:`mfoml.nets.models`: MLP, Conv, Conv1D (and :mod:`mfoml.nets.resnet`'s ResNet18) with
  named probe layers, on the base class of :mod:`mfoml.nets.probed`; nonlinearities in
  :mod:`mfoml.nets.nonlinearities`;
- :mod:`mfoml.nets.layernames`: the probe-layer naming rule, without torch;
- :mod:`mfoml.nets.training`: the training loop (per-epoch metrics, resumable);
- :mod:`mfoml.nets.checkpoints`: checkpoint files (reading with clear errors, resuming);
- :mod:`mfoml.nets.activations`: ordered per-layer activation dumps (memory-mappable float16);
- :mod:`mfoml.nets.dumps`: reading those dumps (numpy only, no torch);
  :mod:`mfoml.nets.dump_splits`: which samples the ``activations`` rule dumps, and its dumps;
- :mod:`mfoml.nets.layer_probe`, :mod:`mfoml.nets.ssl_eval`: the sparsity probe over a run's
  dumps (rule ``probe``) and the evaluation of a self-supervised run's layers (rule
  ``ssl_eval``), numpy only;
- :mod:`mfoml.nets.losses`: the SVSL loss (imports :mod:`mfoml.collapse.accumulators`);
- :mod:`mfoml.nets.ssl`: self-supervised objectives (SimCLR, VICReg, Barlow Twins, BYOL, DINO)
  and the projection head; :mod:`mfoml.nets.ssl_base` their base class and the momentum
  teacher; :mod:`mfoml.nets.dino` DINO (prototypes, centering, sharpening, multi-crop);
- :mod:`mfoml.nets.augment`: seeded two-view and multi-crop augmentations per data kind (images,
  1-D signals);
- :mod:`mfoml.nets.ssl_model`: SSL encoders (backbone stages + projector stages);
- :mod:`mfoml.nets.ssl_training`: the self-supervised training loop (no labels);
- the training jobs behind the rule scripts: :mod:`mfoml.nets.trainjob` (what they share: the
  resumable partial directory, the run's split, its TrainConfig), :mod:`mfoml.nets.supervised`
  (rule ``train``), :mod:`mfoml.nets.transfer` (weights from a source run or an MLM stage),
  :mod:`mfoml.nets.ssl_job` (rule ``train_ssl``); :mod:`mfoml.nets.threads`: the intra-op
  torch threads that pay for a model's batch (``train.torch_threads``).

Names are loaded on first use (``import mfoml.nets`` does not import torch).
"""

from mfoml._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "activations": ("dump_activations",),
        "architectures": ("ARCHITECTURES",),
        "dumps": ("ActivationDump", "open_activations"),
        "checkpoints": ("CheckpointError", "list_checkpoints", "load_checkpoint"),
        "losses": ("SVSLLoss",),
        "layernames": ("probe_layer_names",),
        "augment": ("make_augmenter", "two_views"),
        "ssl": ("build_objective",),
        "ssl_model": ("SSLNet", "build_ssl_model"),
        "ssl_training": ("train_ssl",),
        "models": ("ProbedModel", "build_model"),
        "training": ("ExtraLoss", "TrainConfig", "train"),
    },
)
