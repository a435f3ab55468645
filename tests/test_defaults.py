"""One source for each default: the dataclasses behind the configuration default to the schema's values.

The pipeline always builds them from a validated configuration (schema defaults filled in), but
library users build them directly; both must get the paper's settings from the same numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from comir.config.schema import load_schema, node_defaults, section_defaults
from comir.network.model import TiramisuConfig
from comir.testset import TestSetRecipe
from comir.training.settings import TrainingConfig

DEFINITIONS = load_schema()["definitions"]




def plain(value: Any) -> Any:
    """Dataclass defaults as the schema writes them: tuples as lists, dataclasses as mappings."""
    if dataclasses.is_dataclass(value):
        return {key: plain(item) for key, item in dataclasses.asdict(value).items()}
    if isinstance(value, (tuple, list)):
        return [plain(item) for item in value]
    return value


def dataclass_defaults(cls: type) -> dict[str, Any]:
    return {f.name: plain(f.default) for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize(
    "cls, node, renamed",
    [
        (TrainingConfig, DEFINITIONS["dataset"]["properties"]["training"], {}),
        (TiramisuConfig, DEFINITIONS["dataset"]["properties"]["model"], {}),
        (TestSetRecipe, DEFINITIONS["testset"], {}),
        (
            TestSetRecipe,
            DEFINITIONS["testset"]["properties"]["multiregeval"],
            {"rotation_step_deg": "level_rotation_step_deg", "translation_step_px": "level_translation_step_px"},
        ),
    ],
)
def test_dataclass_defaults_equal_the_schema(cls, node, renamed):
    schema = {renamed.get(name, name): value for name, value in node_defaults(node).items()}
    ours = dataclass_defaults(cls)
    shared = sorted(set(schema) & set(ours))
    assert shared, f"{cls.__name__} shares no field with the schema section"
    assert {k: ours[k] for k in shared} == {k: schema[k] for k in shared}


def test_every_schema_key_of_training_and_model_is_a_dataclass_field():
    for cls, section in ((TrainingConfig, "training"), (TiramisuConfig, "model")):
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(DEFINITIONS["dataset"]["properties"][section]["properties"]) <= fields, cls.__name__


def test_section_defaults_are_the_schema_section_s():
    inference = section_defaults("inference")
    assert inference == node_defaults(DEFINITIONS["dataset"]["properties"]["inference"])
    assert inference["engine"] == "onnxruntime" and inference["margin"] is None and inference["c4_average"] is False

