"""Real architectures for the demo and the benchmark, written with ``torch.nn`` only.

The worker image has no torchvision, so the classic models are rebuilt here layer for layer
(the ResNet-18 has torchvision's exact layout and parameter count). Every factory returns a
module in eval mode whose weights depend only on ``seed``, so two exports of the same sample
are byte-comparable. ``SAMPLES`` lists each one with the inputs it is exported with.

This module imports torch: only the worker side (``exportq[worker]``) may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

# ---------------------------------------------------------------------------------------------
# ResNet-18
# ---------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, blocks: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        stages: list[nn.Sequential] = []
        for i, count in enumerate(blocks):
            cout = 64 * 2**i
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(cin, cout, stride)]
            layers += [BasicBlock(cout, cout) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        _init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------------------------------------
# MobileNetV2
# ---------------------------------------------------------------------------------------------


def _make_divisible(value: float, divisor: int = 8) -> int:
    # the reference implementation's rounding: never drop more than 10% of the channels
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(cin, hidden, 1, 1))
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, cout, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    # (expand ratio, channels, repeats, first stride)
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0) -> None:
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [_conv_bn_relu6(3, cin, 3, 2)]
        for t, c, n, s in self.SETTINGS:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(_conv_bn_relu6(cin, last, 1, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))
        _init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# ---------------------------------------------------------------------------------------------
# Sequence models
# ---------------------------------------------------------------------------------------------


class TransformerEncoderClassifier(nn.Module):
    """A BERT-style encoder over precomputed float features ``[batch, seq, d_model]``.

    Float features rather than token ids keep this sample about attention; ``lstm_tagger``
    covers int64 ids. Export it with ``torch.backends.mha.set_fastpath_enabled(False)``: in
    eval mode under ``no_grad`` the trace otherwise records the fused
    ``aten::_transformer_encoder_layer_fwd``, which PNNX cannot lower (docs/PNNX.md).
    """

    def __init__(
        self, d_model: int = 128, nhead: int = 4, layers: int = 2, num_classes: int = 10
    ) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True
        )
        # nested tensors only speed up padded eager batches; the fused MHA fast path is a
        # separate switch that the exporter must turn off (docs/PNNX.md)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x).mean(dim=1))


class LstmTagger(nn.Module):
    """Token ids -> embedding -> LSTM -> per-token tag scores.

    Converts with ``inputshape=[1,32]i64``; ncnn must then be fed the ids as int32 (an int64
    array is accepted silently and gives garbage).
    """

    def __init__(
        self, vocab: int = 1000, embed: int = 64, hidden: int = 128, tags: int = 17
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, tags)

    def forward(self, tokens: Tensor) -> Tensor:
        out, _ = self.lstm(self.embedding(tokens))
        return self.fc(out)


def _init_conv_bn(model: nn.Module) -> None:
    # Random BN statistics, so fused conv+BN is actually tested (the defaults 0/1 are a no-op
    # that would hide a wrong fusion).
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.1)
            assert m.running_mean is not None and m.running_var is not None
            nn.init.uniform_(m.running_mean, -0.1, 0.1)
            nn.init.uniform_(m.running_var, 0.5, 1.5)


# ---------------------------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------------------------


def resnet18(num_classes: int = 1000, seed: int = 0) -> nn.Module:
    """ResNet-18 (11.7M parameters with 1000 classes); input ``[1, 3, 224, 224]``."""
    torch.manual_seed(seed)
    return ResNet([2, 2, 2, 2], num_classes).eval()


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, seed: int = 0) -> nn.Module:
    """MobileNetV2 (3.5M parameters at width 1.0); input ``[1, 3, 224, 224]``."""
    torch.manual_seed(seed)
    return MobileNetV2(num_classes, width_mult).eval()


def transformer_encoder(
    d_model: int = 128, nhead: int = 4, layers: int = 2, num_classes: int = 10, seed: int = 0
) -> nn.Module:
    """Transformer encoder classifier; input float features ``[1, 16, d_model]``."""
    torch.manual_seed(seed)
    return TransformerEncoderClassifier(d_model, nhead, layers, num_classes).eval()


def lstm_tagger(
    vocab: int = 1000, embed: int = 64, hidden: int = 128, tags: int = 17, seed: int = 0
) -> nn.Module:
    """Embedding + LSTM tagger; input int64 token ids ``[1, 32]``."""
    torch.manual_seed(seed)
    return LstmTagger(vocab, embed, hidden, tags).eval()


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleInfo:
    """One sample: what to import, the inputs it is exported with, and a one-line summary."""

    name: str
    target: str
    inputs: list[tuple[list[int], str]]
    description: str
    kwargs: dict[str, object] = field(default_factory=dict)

    def spec(self, **extra: object) -> dict[str, object]:
        """A job spec (as JSON) exporting this sample with its inputs; `extra` adds fields."""
        return {
            "model": {"kind": "callable", "target": self.target, "kwargs": dict(self.kwargs)},
            "inputs": [
                {"name": f"in{i}", "shape": shape, "dtype": dtype}
                for i, (shape, dtype) in enumerate(self.inputs)
            ],
            **extra,
        }

    def build(self) -> nn.Module:
        factory: Callable[..., nn.Module] = globals()[self.target.rpartition(":")[2]]
        return factory(**self.kwargs)


SAMPLES: dict[str, SampleInfo] = {
    s.name: s
    for s in (
        SampleInfo(
            "resnet18",
            "exportq.samples:resnet18",
            [([1, 3, 224, 224], "float32")],
            "ResNet-18 image classifier, 11.7M parameters",
        ),
        SampleInfo(
            "mobilenet_v2",
            "exportq.samples:mobilenet_v2",
            [([1, 3, 224, 224], "float32")],
            "MobileNetV2 (depthwise inverted residuals, ReLU6), 3.5M parameters",
        ),
        SampleInfo(
            "transformer_encoder",
            "exportq.samples:transformer_encoder",
            [([1, 16, 128], "float32")],
            "2-layer Transformer encoder over 16 float feature vectors",
        ),
        SampleInfo(
            "lstm_tagger",
            "exportq.samples:lstm_tagger",
            [([1, 32], "int64")],
            "Embedding + LSTM sequence tagger over 32 int64 token ids in [0, 1000)",
        ),
    )
}
