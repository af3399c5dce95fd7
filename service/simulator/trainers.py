"""The trainers the simulator serves: public models owned by other accounts.

Each has one version with a fixed id, so tests and docs can name it, and an
OpenAPI schema declaring typed training inputs the way cog writes them: titles,
`x-order`, `required`, `default`s, bounds, and enums as `allOf` of a `$ref`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FLUX_DEV_LORA_TRAINER = "ostris/flux-dev-lora-trainer"
FLUX_DEV_LORA_TRAINER_VERSION = (
    "e68139c4d943ea56373d72b9108b5d36462756c30429d611e97b197d5dae9910"
)
FAST_FLUX_TRAINER = "replicate/fast-flux-trainer"
FAST_FLUX_TRAINER_VERSION = (
    "054730735b64618cc4f4363f16cd87f2acdf87cf7df9677267dd32ff0abd26d2"
)
SDXL_TRAINER = "stability-ai/sdxl"
SDXL_TRAINER_VERSION = (
    "20907bc2a05f6a4622dac5099dd8642f1369a0f0dc3ff8437e096423ebe63f46"
)

COG_VERSION = "0.9.13"
OPENAPI_VERSION = "3.0.2"


@dataclass(frozen=True)
class Trainer:
    """A trainer model and its one version."""

    full_name: str
    description: str
    version_id: str
    version_created_at: datetime
    hardware: str
    training_input: Mapping[str, Any]
    enums: Mapping[str, Any]
    steps_input: str
    trained_input: Mapping[str, Any]
    github_url: str | None = None
    paper_url: str | None = None
    license_url: str | None = None

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/")[1]

    def openapi_schema(self) -> dict[str, Any]:
        """The version's schema. The training inputs are under `TrainingInput`,
        where cog puts them, and under `Input` as well, where older trainers
        and Tuneyard look for them."""
        return cog_schema(
            {
                "Input": self.training_input,
                "TrainingInput": self.training_input,
                "TrainingOutput": _object(
                    "TrainingOutput",
                    [_field("weights", "string", "The trained weights", fmt="uri")],
                    required=["weights"],
                ),
                "Output": _IMAGES_OUTPUT,
                **self.enums,
            }
        )

    def trained_schema(self) -> dict[str, Any]:
        """The schema of each version a training with this trainer creates."""
        return cog_schema(
            {"Input": self.trained_input, "Output": _IMAGES_OUTPUT, **_IMAGE_ENUMS}
        )


def cog_schema(schemas: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAPI document shaped like the ones cog builds."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {"schemas": dict(schemas)},
    }


def _field(
    name: str,
    kind: str | None,
    description: str,
    *,
    default: Any = None,
    minimum: float | None = None,
    maximum: float | None = None,
    fmt: str | None = None,
    enum: str | None = None,
) -> tuple[str, dict[str, Any]]:
    spec: dict[str, Any] = {"title": name.replace("_", " ").title()}
    if enum is not None:
        spec["allOf"] = [{"$ref": f"#/components/schemas/{enum}"}]
    if kind is not None:
        spec["type"] = kind
    spec["description"] = description
    optional = {"default": default, "minimum": minimum, "maximum": maximum}
    spec.update({key: value for key, value in optional.items() if value is not None})
    if fmt is not None:
        spec["format"] = fmt
    return name, spec


def _object(
    title: str,
    fields: list[tuple[str, dict[str, Any]]],
    required: list[str] | None = None,
) -> dict[str, Any]:
    properties = {name: {**spec, "x-order": i} for i, (name, spec) in enumerate(fields)}
    schema: dict[str, Any] = {
        "type": "object",
        "title": title,
        "properties": properties,
    }
    if required:
        schema["required"] = required
    return schema


def _enum(title: str, kind: str, values: list[Any]) -> dict[str, Any]:
    return {
        "title": title,
        "description": "An enumeration.",
        "enum": values,
        "type": kind,
    }


_IMAGES_OUTPUT = {
    "type": "array",
    "title": "Output",
    "items": {"type": "string", "format": "uri"},
}
_IMAGE_ENUMS = {
    "aspect_ratio": _enum("aspect_ratio", "string", ["1:1", "16:9", "4:3", "9:16"]),
    "output_format": _enum("output_format", "string", ["webp", "jpg", "png"]),
}

_ZIP_OF_IMAGES = (
    "A zip file of the training images; captions may sit beside each image in a "
    ".txt file of the same name."
)

_LORA_INFERENCE = _object(
    "Input",
    [
        _field("prompt", "string", "The prompt; include the trigger word."),
        _field(
            "lora_scale",
            "number",
            "How strongly the LoRA applies.",
            default=1,
            minimum=-1,
            maximum=3,
        ),
        _field(
            "num_outputs",
            "integer",
            "Images to generate.",
            default=1,
            minimum=1,
            maximum=4,
        ),
        _field(
            "aspect_ratio",
            None,
            "The images' aspect ratio.",
            default="1:1",
            enum="aspect_ratio",
        ),
        _field(
            "output_format",
            None,
            "The images' file format.",
            default="webp",
            enum="output_format",
        ),
        _field("seed", "integer", "A seed for reproducible images."),
    ],
    required=["prompt"],
)

FLUX_DEV_LORA = Trainer(
    full_name=FLUX_DEV_LORA_TRAINER,
    description="Fine-tune FLUX.1-dev with LoRA using ai-toolkit",
    version_id=FLUX_DEV_LORA_TRAINER_VERSION,
    version_created_at=datetime(2024, 9, 26, 17, 4, 11, 531000, tzinfo=UTC),
    hardware="gpu-h100",
    github_url="https://github.com/ostris/ai-toolkit",
    license_url="https://github.com/ostris/ai-toolkit/blob/main/LICENSE",
    training_input=_object(
        "TrainingInput",
        [
            _field("input_images", "string", _ZIP_OF_IMAGES, fmt="uri"),
            _field(
                "trigger_word",
                "string",
                "A word the images will be tied to.",
                default="TOK",
            ),
            _field(
                "autocaption",
                "boolean",
                "Caption images that have no caption.",
                default=True,
            ),
            _field("autocaption_prefix", "string", "Text put before each caption."),
            _field(
                "steps",
                "integer",
                "Training steps.",
                default=1000,
                minimum=3,
                maximum=6000,
            ),
            _field(
                "lora_rank",
                "integer",
                "The LoRA's rank.",
                default=16,
                minimum=1,
                maximum=128,
            ),
            _field("learning_rate", "number", "The learning rate.", default=0.0004),
            _field(
                "batch_size", None, "Images per step.", default=1, enum="batch_size"
            ),
            _field(
                "resolution",
                "string",
                "Training resolutions, comma-separated.",
                default="512,768,1024",
            ),
            _field(
                "caption_dropout_rate",
                "number",
                "How often to drop a caption.",
                default=0.05,
                minimum=0,
                maximum=1,
            ),
            _field("optimizer", "string", "The optimizer.", default="adamw8bit"),
        ],
        required=["input_images"],
    ),
    enums={"batch_size": _enum("batch_size", "integer", [1, 2, 4])},
    steps_input="steps",
    trained_input=_LORA_INFERENCE,
)

FAST_FLUX = Trainer(
    full_name=FAST_FLUX_TRAINER,
    description="Train subjects or styles faster than ever",
    version_id=FAST_FLUX_TRAINER_VERSION,
    version_created_at=datetime(2025, 1, 20, 9, 31, 2, 118000, tzinfo=UTC),
    hardware="gpu-h100",
    training_input=_object(
        "TrainingInput",
        [
            _field("input_images", "string", _ZIP_OF_IMAGES, fmt="uri"),
            _field(
                "trigger_word",
                "string",
                "A word the images will be tied to.",
                default="TOK",
            ),
            _field(
                "lora_type",
                None,
                "What the LoRA learns.",
                default="subject",
                enum="lora_type",
            ),
            _field(
                "training_steps",
                "integer",
                "Training steps.",
                default=1000,
                minimum=10,
                maximum=4000,
            ),
        ],
        required=["input_images"],
    ),
    enums={"lora_type": _enum("lora_type", "string", ["subject", "style"])},
    steps_input="training_steps",
    trained_input=_LORA_INFERENCE,
)

SDXL = Trainer(
    full_name=SDXL_TRAINER,
    description="A text-to-image generative AI model that creates beautiful images",
    version_id=SDXL_TRAINER_VERSION,
    version_created_at=datetime(2023, 9, 7, 2, 5, 23, 420000, tzinfo=UTC),
    hardware="gpu-a40-large",
    github_url="https://github.com/replicate/cog-sdxl",
    paper_url="https://arxiv.org/abs/2307.01952",
    license_url="https://github.com/Stability-AI/generative-models/blob/main/model_licenses/LICENSE-SDXL1.0",
    training_input=_object(
        "TrainingInput",
        [
            _field("input_images", "string", _ZIP_OF_IMAGES, fmt="uri"),
            _field("seed", "integer", "A seed for reproducible training."),
            _field(
                "resolution",
                "integer",
                "Square pixel resolution.",
                default=768,
                minimum=256,
                maximum=2048,
            ),
            _field(
                "train_batch_size", "integer", "Images per step.", default=4, minimum=1
            ),
            _field(
                "max_train_steps", "integer", "Training steps.", default=1000, minimum=1
            ),
            _field(
                "is_lora",
                "boolean",
                "Train a LoRA rather than the full model.",
                default=True,
            ),
            _field(
                "unet_learning_rate",
                "number",
                "The UNet's learning rate.",
                default=1e-6,
            ),
            _field("lora_lr", "number", "The LoRA's learning rate.", default=1e-4),
            _field("lora_rank", "integer", "The LoRA's rank.", default=32, minimum=1),
            _field(
                "token_string",
                "string",
                "The token that stands for the subject.",
                default="TOK",
            ),
            _field(
                "caption_prefix",
                "string",
                "Text put before each caption.",
                default="a photo of TOK, ",
            ),
        ],
        required=["input_images"],
    ),
    enums={},
    steps_input="max_train_steps",
    trained_input=_LORA_INFERENCE,
)

TRAINERS: tuple[Trainer, ...] = (SDXL, FLUX_DEV_LORA, FAST_FLUX)
"""Every trainer, oldest first: the order they are registered in at start."""

# The schema of a version added "from the web" through the admin API when the
# caller gives none: a plain image model.
PUSHED_VERSION_SCHEMA = cog_schema(
    {"Input": _LORA_INFERENCE, "Output": _IMAGES_OUTPUT, **_IMAGE_ENUMS}
)
