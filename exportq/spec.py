"""The job spec: what a user submits. Torch-free pydantic models.

Validation messages name the field and say what to change. Shapes are bounded by an element cap
(`EXPORTQ_MAX_INPUT_ELEMENTS`, or `max_elements` in the validation context) so that a typo cannot
allocate a hundred gigabytes on a worker.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exportq.settings import get_settings
from exportq.tiers import CC_TIERS, MEMORY_TIERS_GB

BLOB_PATTERN = r"^sha256:[0-9a-f]{64}$"
TARGET_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")

BlobRef = Annotated[
    str,
    Field(pattern=BLOB_PATTERN, description="content address `sha256:<64 hex>` of a blob"),
]
Dtype = Literal["float32", "float16", "float64", "int64", "int32", "uint8", "bool"]
Step = Literal["torchscript", "pnnx", "ncnn"]
Target = Literal["pnnx", "ncnn", "onnx"]
MAX_RANK = 8
DEFAULT_TARGETS: tuple[Target, ...] = ("pnnx", "ncnn")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CallableModel(_Strict):
    """A model built on the worker by `factory(**kwargs)`, optionally loaded with weights."""

    kind: Literal["callable"] = "callable"
    target: str = Field(description="`pkg.module:factory`, from an allowed module")
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    weights: BlobRef | None = Field(
        default=None, description="safetensors or a torch.save state_dict (weights_only)"
    )

    @field_validator("target")
    @classmethod
    def _target_form(cls, value: str) -> str:
        if not TARGET_PATTERN.match(value):
            raise ValueError(
                f"target {value!r} must look like 'package.module:factory' "
                "(a module path, a colon, a function or class name)"
            )
        return value

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]


class TorchScriptModel(_Strict):
    """An already exported TorchScript file; its outputs are the reference."""

    kind: Literal["torchscript"] = "torchscript"
    blob: BlobRef


ModelRef = Annotated[CallableModel | TorchScriptModel, Field(discriminator="kind")]


class InputSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][\w]*$", max_length=64)
    shape: list[int] = Field(min_length=1, max_length=MAX_RANK)
    dtype: Dtype = "float32"
    range: tuple[float, float] | None = Field(
        default=None, description="[low, high) of random values; ints default to [0, 10)"
    )

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape: list[int]) -> list[int]:
        bad = [d for d in shape if d <= 0]
        if bad:
            raise ValueError(f"every dimension must be a positive integer, got {shape}")
        return shape

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"range must be [low, high) with low < high, got {list(value)}")
        return value


class GpuRequest(_Strict):
    """The least GPU a job needs; it is routed to the smallest tier that covers both bounds
    (`exportq.tiers`), so it must not ask beyond the largest tier."""

    min_memory_gb: float | None = Field(default=None, gt=0, le=MEMORY_TIERS_GB[-1])
    min_compute_capability: float | None = Field(default=None, ge=3.0, le=CC_TIERS[-1])

    @property
    def empty(self) -> bool:
        return self.min_memory_gb is None and self.min_compute_capability is None


class ConvertOptions(_Strict):
    targets: list[Target] = Field(default_factory=lambda: list(DEFAULT_TARGETS), min_length=1)
    fp16: bool = True
    optlevel: int = Field(default=2, ge=0, le=2)
    customop: list[str] = Field(default_factory=list)
    moduleop: list[str] = Field(default_factory=list)

    @field_validator("customop", "moduleop")
    @classmethod
    def _no_spaces(cls, values: list[str]) -> list[str]:
        # PNNX takes key=value arguments: a space or comma would split one into several.
        for v in values:
            if not v or any(c.isspace() for c in v) or "," in v:
                raise ValueError(f"{v!r} must be non-empty, without spaces or commas")
        return values


class Tolerance(_Strict):
    """Bounds on one step's drift. `max_rel` is max|a-b| over the reference's max|ref|."""

    max_rel: float = Field(gt=0)
    min_cosine: float = Field(default=0.999, gt=0, le=1)
    max_abs: float | None = Field(default=None, gt=0)


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "torchscript": Tolerance(max_rel=1e-4, min_cosine=0.99999),
    "pnnx": Tolerance(max_rel=1e-3, min_cosine=0.9999),
    "ncnn": Tolerance(max_rel=1e-3, min_cosine=0.9999),
}
# fp16 weight storage in ncnn costs about three decimal digits.
NCNN_FP16_TOLERANCE = Tolerance(max_rel=3e-2, min_cosine=0.999)


class ValidateOptions(_Strict):
    trials: int = Field(default=3, ge=1, le=20, description="random input sets per shape set")
    mode: Literal["strict", "warn"] = "strict"
    seed: int = 0
    tolerances: dict[Step, Tolerance] = Field(default_factory=dict)


class JobSpec(_Strict):
    model: ModelRef
    method: Literal["trace", "script", "auto"] = "trace"
    inputs: list[InputSpec] = Field(min_length=1, max_length=16)
    samples: BlobRef | None = Field(default=None, description="an .npz of real inputs")
    dynamic: list[list[int]] | None = Field(
        default=None, description="a second shape per input (PNNX inputshape2)"
    )
    device: Literal["cpu", "cuda"] = "cpu"
    gpu: GpuRequest | None = None
    convert: ConvertOptions = Field(default_factory=ConvertOptions)
    validate_: ValidateOptions = Field(
        default_factory=ValidateOptions, alias="validate", serialization_alias="validate"
    )
    priority: int = Field(default=5, ge=0, le=9)
    timeout_s: int = Field(default=1800, ge=1, le=24 * 3600)
    labels: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=256)]] = (
        Field(default_factory=dict, max_length=32)
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("inputs")
    @classmethod
    def _unique_names(cls, inputs: list[InputSpec]) -> list[InputSpec]:
        names = [i.name for i in inputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"input names must be unique; repeated: {', '.join(dupes)}")
        return inputs

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> JobSpec:
        cap = (info.context or {}).get("max_elements") or get_settings().max_input_elements
        for i, inp in enumerate(self.inputs):
            _check_elements(f"inputs.{i}.shape", inp.shape, cap)
        if self.dynamic is not None:
            if len(self.dynamic) != len(self.inputs):
                raise ValueError(
                    f"dynamic needs one shape per input: {len(self.inputs)} inputs, "
                    f"{len(self.dynamic)} shapes"
                )
            for i, (shape, inp) in enumerate(zip(self.dynamic, self.inputs, strict=True)):
                if len(shape) != len(inp.shape) or any(d <= 0 for d in shape):
                    raise ValueError(
                        f"dynamic.{i}: {shape} must have the rank of inputs.{i} "
                        f"({len(inp.shape)}) and positive dimensions"
                    )
                _check_elements(f"dynamic.{i}", shape, cap)
        if self.gpu is not None and self.device != "cuda":
            raise ValueError("a gpu request needs device 'cuda'")
        return self

    @property
    def validate_options(self) -> ValidateOptions:
        return self.validate_

    def tolerance(self, step: Step) -> Tolerance:
        """The tolerance for one step: the user's, else the default for this spec."""
        if step in self.validate_.tolerances:
            return self.validate_.tolerances[step]
        if step == "ncnn" and self.convert.fp16:
            return NCNN_FP16_TOLERANCE
        return DEFAULT_TOLERANCES[step]

    def blob_refs(self) -> list[str]:
        """Every blob the job needs, in a stable order."""
        refs: list[str] = []
        if isinstance(self.model, CallableModel) and self.model.weights:
            refs.append(self.model.weights)
        if isinstance(self.model, TorchScriptModel):
            refs.append(self.model.blob)
        if self.samples:
            refs.append(self.samples)
        return refs

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


def _check_elements(where: str, shape: list[int], cap: int) -> None:
    elements = math.prod(shape)
    if elements > cap:
        raise ValueError(
            f"{where} {shape} has {elements:,} elements, over the cap of {cap:,} "
            "(EXPORTQ_MAX_INPUT_ELEMENTS); check for a typo in the shape"
        )
