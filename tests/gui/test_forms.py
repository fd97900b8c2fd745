"""Forms generated from the JSON Schema that ``aether.describe`` publishes
(made here by the real registry from a real operation declaration)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

import aether
from aether.gui import forms
from aether.schema import Registry


class Point(msgspec.Struct, frozen=True, kw_only=True):
    """A point."""

    x: int
    label: str = "origin"


@aether.operation(code=0x0E01, name="form.everything", result=None)
class Everything(aether.Params, frozen=True, kw_only=True):
    """Every kind of field the form builder knows."""

    count: Annotated[int, msgspec.Meta(ge=1, le=10, description="How many, 1 to 10.")]
    ratio: Annotated[float, msgspec.Meta(gt=0.0, description="Positive.")] = 0.5
    big: int = 2**40
    name: Annotated[str, msgspec.Meta(min_length=2, pattern="^[a-z]+$")] = "abc"
    mode: Literal["fast", "safe"] = "safe"
    flag: bool = False
    tags: list[str] = []
    limit: int | None = None
    where: Point | None = None
    origin: Point = Point(x=0)
    blob: bytes = b""


@pytest.fixture
def form(qtbot):
    from aether.schema.params import SPEC_ATTR

    reg = Registry([getattr(Everything, SPEC_ATTR)])
    params = next(d for d in reg.describe() if d["name"] == "form.everything")["params"]
    widget = forms.OperationForm(params)
    qtbot.addWidget(widget)
    return widget


def test_each_schema_kind_gets_its_editor(form):
    f = form.fields
    assert isinstance(f["count"], forms.BoundedIntEditor)
    assert (f["count"].spin.minimum(), f["count"].spin.maximum()) == (1, 10)
    assert isinstance(f["ratio"], forms.NumberEditor)
    assert isinstance(f["big"], forms.NumberEditor)  # beyond 32 bits: checked text
    assert isinstance(f["name"], forms.TextEditor)
    assert isinstance(f["mode"], forms.EnumEditor) and f["mode"].choices == ["fast", "safe"]
    assert isinstance(f["flag"], forms.BoolEditor)
    assert isinstance(f["tags"], forms.ListEditor)
    assert isinstance(f["limit"], forms.OptionalEditor)
    assert isinstance(f["where"], forms.OptionalEditor)
    assert isinstance(f["where"].inner, forms.StructEditor)
    assert isinstance(f["origin"], forms.StructEditor)
    assert f["blob"].is_bytes
    # The schema's documentation is the tooltip.
    assert "How many, 1 to 10." in f["count"].widget.toolTip()
    assert "Required." in f["count"].widget.toolTip()
    assert "Default: &quot;safe&quot;" in f["mode"].widget.toolTip() or \
        'Default: "safe"' in f["mode"].widget.toolTip()


def test_values_round_trip_into_the_operation(form):
    f = form.fields
    f["count"].set_value(3)
    f["tags"].add_item("a")
    f["tags"].add_item("b")
    f["limit"].set_value(7)
    f["where"].set_value({"x": 5, "label": "here"})
    f["blob"].set_value("hi")
    values = form.values()
    params = msgspec.convert(values, Everything)
    assert params.count == 3 and params.tags == ["a", "b"] and params.limit == 7
    assert params.where == Point(x=5, label="here") and params.origin == Point(x=0)
    assert params.big == 2**40 and params.mode == "safe" and params.blob == b"hi"
    f["limit"].enabled.setChecked(False)
    assert form.values()["limit"] is None


def test_bad_values_are_named_and_nothing_passes(form):
    f = form.fields
    f["ratio"].set_value("-1")
    f["name"].set_value("A")
    f["big"].set_value("lots")
    f["origin"].fields["x"].set_value("")
    with pytest.raises(forms.FormErrors) as info:
        form.values()
    text = str(info.value)
    assert "ratio: -1.0 must be greater than 0.0" in text
    assert "name: needs at least 2 characters" in text
    assert "big: 'lots' is not an integer" in text
    assert "origin.x: needs an integer" in text
    assert f["ratio"].widget.property("invalid") is True
    assert f["count"].widget.property("invalid") is False


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=20))
def test_integer_field_accepts_exactly_integers(qapp, text):
    editor = forms.NumberEditor("n", {"type": "integer", "minimum": 0}, {})
    editor.set_value(text)
    try:
        expected = int(text.strip(), 0)
    except ValueError:
        expected = None
    if expected is None or expected < 0:
        with pytest.raises(forms.FieldError):
            editor.value()
    else:
        assert editor.value() == expected


def test_service_text_is_never_markup():
    """A service's schema is data: its descriptions are escaped, not rendered."""
    tip = forms.tooltip_for("x<i>", {"type": "string", "description": "<img src='/etc/x'>",
                                     "default": "<b>"}, {}, False)
    assert "<img" not in tip and "&lt;img" in tip and "x&lt;i&gt;" in tip
