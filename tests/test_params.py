"""One declaration drives the CLI, the GUI form and project JSON."""
import argparse
from dataclasses import dataclass

import pytest

from core.errors import InvalidInput
from core.params import MethodParams, add_arguments, from_namespace, param


@dataclass(frozen=True, kw_only=True)
class DemoParams(MethodParams):
    steps: int = param(30, "Steps.", min=2, max=100)
    prompt: str = param("", "Target prompt.", kind="text", required=True)
    strength: float = param(0.5, "How strong.", min=0.0, max=1.0)
    fancy: bool = param(False, "Fancy mode.", advanced=True)
    points: tuple = param((), "Pairs.", kind="points")
    mode: str = param("a", "Mode.", choices=("a", "b"))


def test_describe_lists_fields_with_defaults_common_first():
    d = DemoParams.describe()
    names = [x["name"] for x in d]
    assert names[0] == "prompt" and names[-3:] == ["steps", "seed", "fancy"] and set(names) == {"steps", "seed", "prompt", "strength", "fancy", "points", "mode"}
    steps = next(x for x in d if x["name"] == "steps")
    assert steps["default"] == 30 and steps["min"] == 2 and steps["flag"] == "--steps"


def test_json_round_trip_and_validation():
    p = DemoParams.from_dict({"prompt": "a dog", "points": [[1, 2, 3, 4]], "strength": "0.25"})
    assert p.points == ((1.0, 2.0, 3.0, 4.0),) and p.strength == 0.25
    assert DemoParams.from_dict(p.to_dict()) == p
    with pytest.raises(InvalidInput, match="required"):
        DemoParams.from_dict({})
    with pytest.raises(InvalidInput, match="out of range"):
        DemoParams.from_dict({"prompt": "x", "strength": 2})
    with pytest.raises(InvalidInput, match="not a valid int"):
        DemoParams.from_dict({"prompt": "x", "steps": 2.5})
    with pytest.raises(InvalidInput, match="choose one of"):
        DemoParams.from_dict({"prompt": "x", "mode": "c"})
    with pytest.raises(InvalidInput, match="HX,HY,TX,TY"):
        DemoParams.from_dict({"prompt": "x", "points": ["1,2,3"]})


def test_cli_flags_come_from_the_dataclass():
    parser = argparse.ArgumentParser()
    add_arguments(parser, DemoParams)
    ns = parser.parse_args(["--prompt", "a cat", "--strength", "0.75", "--fancy", "--point", "1,2,3,4",
                            "--point", "5,6,7,8"])
    p = from_namespace(DemoParams, ns)
    assert p.prompt == "a cat" and p.strength == 0.75 and p.fancy is True and len(p.points) == 2
    assert p.steps == 30  # untouched flags keep the dataclass default


def test_every_methods_help_text_prints_on_the_command_line():
    """argparse %-formats help texts: a help text with a literal % ("the last 70% of the schedule")
    must still print."""
    import argparse

    from core.params import add_arguments
    from core.registry import all_methods

    for method in all_methods():
        parser = argparse.ArgumentParser(prog=method.name)
        add_arguments(parser, method.params)
        text = parser.format_help()
        for f in method.params.fields():
            if "%" in f.metadata["help"]:
                assert "%" in text, method.name
