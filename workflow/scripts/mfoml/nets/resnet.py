"""ResNet18 with a switchable skip connection and a small-image stem (see
:mod:`mfoml.nets.models` for the architecture's description; built by
:func:`mfoml.nets.models.build_model`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from mfoml.nets.probed import ProbedModel

__all__ = ["ResNet18"]


class _Block(nn.Module):
    """A torchvision BasicBlock with a chosen activation and an optional skip connection."""

    def __init__(self, basic: nn.Module, residual: bool, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.conv1, self.bn1 = basic.conv1, basic.bn1
        self.conv2, self.bn2 = basic.conv2, basic.bn2
        self.act1, self.act2 = act(), act()
        self.residual = residual
        self.downsample = basic.downsample if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.act2(out)

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


class ResNet18(ProbedModel):
    """torchvision ResNet18 with a switchable skip connection and a small-image stem."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        residual: bool,
        stem: str,
        act: Callable[[], nn.Module],
    ) -> None:
        super().__init__()
        from torchvision.models import resnet18

        c = input_shape[0]
        net = resnet18(weights=None, num_classes=n_classes)
        if stem == "cifar":
            conv1 = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False)
            stem_mod = nn.Sequential(conv1, net.bn1, act())
        else:
            conv1 = nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
            stem_mod = nn.Sequential(conv1, net.bn1, act(), net.maxpool)
        nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
        stages: dict[str, nn.Module] = {"stem": stem_mod}
        for k in range(1, 5):
            layer = getattr(net, f"layer{k}")
            stages[f"layer{k}"] = nn.Sequential(*[_Block(b, residual, act) for b in layer])
        stages["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        stages["logits"] = net.fc
        self.stages = nn.ModuleDict(stages)
        self.penultimate_layer = "pool"
