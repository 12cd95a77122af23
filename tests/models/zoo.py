"""The test zoo: small models that exercise every path of the export pipeline.

Each factory returns a module in eval mode with deterministic weights (``seed``), small enough
for PNNX to convert it in a second or two on a laptop. ``ZOO`` describes how to export each one
and what the real pipeline (torch 2.13.0, pnnx 20261020, ncnn 1.0.20261020) gives for it: the
``expect`` values were measured by converting every entry (see ``docs/PNNX.md``), not guessed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Shape = list[int]
InputSpec = tuple[Shape, str]


def _ready(model: nn.Module) -> nn.Module:
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Convolutional models: the happy path
# ---------------------------------------------------------------------------------------------


class CnnBn(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, 16, 32, 32]
        for cin, cout in itertools.pairwise(channels):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu6(self.bn1(self.dw(x)))
        return F.relu6(self.bn2(self.pw(x)))


class Depthwise(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6()
        )
        self.blocks = nn.Sequential(
            DepthwiseSeparable(16, 32, 1),
            DepthwiseSeparable(32, 64, 2),
            DepthwiseSeparable(64, 64, 1),
        )
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class UNet(nn.Module):
    def __init__(self, channels: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.enc1 = _conv_block(channels, 8)
        self.enc2 = _conv_block(8, 16)
        self.bottom = _conv_block(16, 32)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = _conv_block(32 + 16, 16)
        self.dec1 = _conv_block(16 + 8, 8)
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up(b), e2], dim=1))
        # bilinear on the last step so both interpolate flavours are covered
        up1 = F.interpolate(d2, scale_factor=2.0, mode="bilinear", align_corners=False)
        d1 = self.dec1(torch.cat([up1, e1], dim=1))
        return self.head(d1)


class DynamicCnn(nn.Module):
    """Fully convolutional: any spatial size works, so it is exported with two shape sets."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_block(3, 8), _conv_block(8, 16))
        self.down = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self.down(self.body(x))))


# ---------------------------------------------------------------------------------------------
# Sequence models
# ---------------------------------------------------------------------------------------------


class Lstm(nn.Module):
    def __init__(self, features: int = 16, hidden: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.rnn = nn.LSTM(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.fc(out)


class Gru(nn.Module):
    def __init__(self, features: int = 16, hidden: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.rnn = nn.GRU(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.fc(out)


class Transformer(nn.Module):
    def __init__(self, d_model: int = 32, nhead: int = 4, layers: int = 2) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward=64, dropout=0.0, batch_first=True
        )
        # nested tensors only speed up padded eager batches; the fused MHA fast path is a
        # separate switch that the exporter must turn off (docs/PNNX.md)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.fc = nn.Linear(d_model, 8)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.encoder(x))


class LayerNormNet(nn.Module):
    def __init__(self, features: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, 64)
        self.norm = nn.LayerNorm(64)
        self.fc2 = nn.Linear(64, 16)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.norm(self.fc1(x))))


class LayerNorm2d(nn.Module):
    """LayerNorm over the last two dims: ncnn loads it and computes something else."""

    def __init__(self, steps: int = 8, features: int = 32) -> None:
        super().__init__()
        self.fc = nn.Linear(features, features)
        self.norm = nn.LayerNorm([steps, features])

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.fc(x))


# ---------------------------------------------------------------------------------------------
# Signatures: several inputs, structured outputs
# ---------------------------------------------------------------------------------------------


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.meta = nn.Linear(6, 8)
        self.fc = nn.Linear(16, 4)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        fa = torch.flatten(self.image(a), 1)
        fb = F.relu(self.meta(b))
        return self.fc(torch.cat([fa, fb], dim=1))


class _Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv_block(3, 8), nn.MaxPool2d(2), _conv_block(8, 16))
        self.fc = nn.Linear(16, 10)

    def both(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.conv(x).mean(dim=(2, 3))
        return self.fc(features), features


class TupleOut(_Backbone):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.both(x)


class DictOut(_Backbone):
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        logits, features = self.both(x)
        return {"logits": logits, "features": features}


# ---------------------------------------------------------------------------------------------
# Models the pipeline must refuse, each with its own error code
# ---------------------------------------------------------------------------------------------


class TraceDivergent(nn.Module):
    """Python control flow on data: a trace freezes whichever branch the example input took."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: Tensor) -> Tensor:
        y = self.fc(x)
        if y.sum() > 0:
            return y * 2
        return y - 1


class ScriptedControlFlow(nn.Module):
    """Scripts cleanly, but the data-dependent ``if`` survives as prim::If that ncnn lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: Tensor) -> Tensor:
        y = self.fc(x)
        if bool(y.mean() > 0):
            return torch.relu(y)
        return torch.sigmoid(y)


class RaisesInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("this model always fails: forward() is deliberately broken")


# ---------------------------------------------------------------------------------------------
# Factories: the public targets ("tests.models.zoo:<name>")
# ---------------------------------------------------------------------------------------------


def cnn_bn(num_classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(CnnBn(num_classes))


def depthwise(num_classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(Depthwise(num_classes))


def unet(classes: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(UNet(classes=classes))


def dynamic_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(DynamicCnn())


def lstm(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(Lstm())


def gru(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(Gru())


def transformer(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(Transformer())


def layernorm_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(LayerNormNet())


def layernorm_2d(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = LayerNorm2d()
    # non-trivial affine parameters, so a dropped or misapplied weight shows in the numbers
    nn.init.uniform_(model.norm.weight, 0.5, 1.5)
    nn.init.uniform_(model.norm.bias, -0.5, 0.5)
    return _ready(model)


def sequential(seed: int = 0) -> nn.Module:
    # A bare nn.Sequential as the top module: PNNX names its children "0", "1", ... and writes
    # `self.0 = nn.Conv2d(...)` into *_pnnx.py, which is not valid Python.
    torch.manual_seed(seed)
    return _ready(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1), nn.Sigmoid()
        )
    )


def two_inputs(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(TwoInputs())


def tuple_out(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(TupleOut())


def dict_out(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(DictOut())


def trace_divergent(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(TraceDivergent())


def scripted_control_flow(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(ScriptedControlFlow())


def raises_in_forward(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _ready(RaisesInForward())


def raises_in_factory(seed: int = 0) -> nn.Module:
    raise ValueError("raises_in_factory: this factory always fails before building a model")


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

Method = Literal["trace", "script"]
F32 = "float32"


@dataclass(frozen=True)
class ZooEntry:
    """How to export one zoo model, and the outcome measured for it.

    ``expect`` is ``"succeeded"`` or the error code the job must fail with; ``note`` says what
    the measurement showed (docs/PNNX.md has the numbers).
    """

    target: str
    inputs: list[InputSpec]
    expect: str
    method: Method = "trace"
    dynamic: list[Shape] | None = None
    note: str = ""


ZOO: dict[str, ZooEntry] = {
    "cnn_bn": ZooEntry("tests.models.zoo:cnn_bn", [([1, 3, 32, 32], F32)], "succeeded"),
    "depthwise": ZooEntry("tests.models.zoo:depthwise", [([1, 3, 32, 32], F32)], "succeeded"),
    "unet": ZooEntry("tests.models.zoo:unet", [([1, 3, 32, 32], F32)], "succeeded"),
    "dynamic_cnn": ZooEntry(
        "tests.models.zoo:dynamic_cnn",
        [([1, 3, 32, 32], F32)],
        "succeeded",
        dynamic=[[1, 3, 48, 64]],
    ),
    "lstm": ZooEntry(
        "tests.models.zoo:lstm",
        [([1, 12, 16], F32)],
        "succeeded",
        note="nn.LSTM's own shape checks emit a harmless TracerWarning while tracing",
    ),
    "gru": ZooEntry(
        "tests.models.zoo:gru",
        [([1, 12, 16], F32)],
        "succeeded",
        note="nn.GRU's own shape checks emit a harmless TracerWarning while tracing",
    ),
    "transformer": ZooEntry(
        "tests.models.zoo:transformer",
        [([1, 16, 32], F32)],
        "succeeded",
        note="only with the MHA fast path off while tracing "
        "(torch.backends.mha.set_fastpath_enabled(False)); traced under no_grad with it on, "
        "the graph holds aten::_transformer_encoder_layer_fwd -> unsupported_ops",
    ),
    "layernorm_net": ZooEntry(
        "tests.models.zoo:layernorm_net",
        [([1, 8, 32], F32)],
        "succeeded",
        note="LayerNorm over the last dim is exact in ncnn (rel err 3e-7)",
    ),
    "layernorm_2d": ZooEntry(
        "tests.models.zoo:layernorm_2d",
        [([1, 8, 32], F32)],
        "ncnn_mismatch",
        note="LayerNorm over the last two dims: PNNX exits 0, ncnn loads, rel err 0.77, "
        "cosine 0.81; *_pnnx.py is exact, so the drift is in ncnn",
    ),
    "sequential": ZooEntry(
        "tests.models.zoo:sequential",
        [([1, 3, 16, 16], F32)],
        "succeeded",
        note="*_pnnx.py is not valid Python (`self.0 = ...`); ncnn is exact",
    ),
    "two_inputs": ZooEntry(
        "tests.models.zoo:two_inputs", [([1, 3, 16, 16], F32), ([1, 6], F32)], "succeeded"
    ),
    "tuple_out": ZooEntry("tests.models.zoo:tuple_out", [([1, 3, 16, 16], F32)], "succeeded"),
    "dict_out": ZooEntry(
        "tests.models.zoo:dict_out",
        [([1, 3, 16, 16], F32)],
        "succeeded",
        note="ncnn out0/out1 follow the dict's insertion order; *_pnnx.py is not valid Python "
        "(prim::DictConstruct)",
    ),
    "trace_divergent": ZooEntry(
        "tests.models.zoo:trace_divergent",
        [([1, 8], F32)],
        "trace_divergent",
        note="TracerWarning from the model's own forward; the trace is wrong on about half "
        "of random inputs (seed 1: rel err 0.8)",
    ),
    "scripted_control_flow": ZooEntry(
        "tests.models.zoo:scripted_control_flow",
        [([1, 8], F32)],
        "unsupported_ops",
        method="script",
        note="ncnn.param keeps torch.gt, aten::Bool, prim::If; ncnn refuses to load it",
    ),
    "raises_in_forward": ZooEntry(
        "tests.models.zoo:raises_in_forward", [([1, 4], F32)], "model_failed"
    ),
    "raises_in_factory": ZooEntry(
        "tests.models.zoo:raises_in_factory", [([1, 4], F32)], "model_failed"
    ),
}
