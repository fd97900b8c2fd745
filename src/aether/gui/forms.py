"""Forms generated from an operation's JSON Schema (as ``aether.describe``
publishes it, i.e. as msgspec writes it).

Each schema node becomes an :class:`Editor`: a widget plus ``value()``,
which validates and raises :class:`FieldError` naming the field, so a bad
value is reported before anything is sent. Supported: strings (with length
bounds and patterns), integers and numbers (with bounds), booleans, enums
(a choice), bytes (entered as text, sent as UTF-8), arrays (rows added and
removed), nested structs (a group), optional fields (``X | None``: a
checkbox that enables the editor), and anything else as JSON text.

Written by hand: Qt has no JSON-Schema form builder, and the few Python
ones target web front ends.
"""

from __future__ import annotations

import abc
import html
import json
import math
import re
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

_NO_DEFAULT = object()
_INT32 = 2**31 - 1


class FieldError(ValueError):
    """A form value that does not fit its schema."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def resolve_ref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in node and seen < 32:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = {**defs.get(name, {}), **{k: v for k, v in node.items() if k != "$ref"}}
        seen += 1
    return node


def describe_type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short human name of a schema node's type, for tooltips and messages."""
    node = resolve_ref(node, defs)
    if "enum" in node:
        return "one of " + ", ".join(map(str, node["enum"]))
    if "anyOf" in node:
        return " or ".join(describe_type(n, defs) for n in node["anyOf"])
    kind = node.get("type", "any value")
    if kind == "array":
        return f"list of {describe_type(node.get('items', {}), defs)}"
    if kind == "object":
        return node.get("title", "record")
    if kind == "string" and node.get("contentEncoding") == "base64":
        return "bytes"
    return str(kind)


def _bounds_text(node: dict[str, Any]) -> str:
    parts = []
    for key, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                     ("exclusiveMaximum", "<")):
        if key in node:
            parts.append(f"{sym} {node[key]}")
    if "minLength" in node:
        parts.append(f"length >= {node['minLength']}")
    if "maxLength" in node:
        parts.append(f"length <= {node['maxLength']}")
    if "pattern" in node:
        parts.append(f"matches {node['pattern']}")
    if "minItems" in node:
        parts.append(f"at least {node['minItems']} items")
    if "maxItems" in node:
        parts.append(f"at most {node['maxItems']} items")
    return ", ".join(parts)


def tooltip_for(name: str, node: dict[str, Any], defs: dict[str, Any], required: bool) -> str:
    esc = html.escape  # the schema comes from the service: text, never markup
    resolved = resolve_ref(node, defs)
    lines = [f"<b>{esc(name)}</b>: {esc(describe_type(node, defs))}"]
    doc = node.get("description") or resolved.get("description")
    if doc:
        lines.append(esc(str(doc)))
    bounds = _bounds_text(resolved)
    if bounds:
        lines.append(f"Allowed: {esc(bounds)}")
    if "default" in node:
        lines.append(f"Default: {esc(json.dumps(node['default']))}")
    elif required:
        lines.append("Required.")
    return "<br>".join(lines)


class Editor(abc.ABC):
    """A widget for one schema node, with validation."""

    widget: QWidget

    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any]) -> None:
        self.path = path
        self.node = node
        self.defs = defs

    @abc.abstractmethod
    def value(self) -> Any: ...

    @abc.abstractmethod
    def set_value(self, value: Any) -> None: ...

    def mark(self, bad: bool) -> None:
        self.widget.setProperty("invalid", bad)
        self.widget.setStyleSheet("border: 1px solid #d9534f;" if bad else "")


class TextEditor(Editor):
    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any]) -> None:
        super().__init__(path, node, defs)
        self.edit = QLineEdit()
        self.widget = self.edit
        self.is_bytes = node.get("contentEncoding") == "base64"
        if self.is_bytes:
            self.edit.setPlaceholderText("text, sent as UTF-8 bytes")

    def value(self) -> Any:
        text = self.edit.text()
        node = self.node
        if "minLength" in node and len(text) < node["minLength"]:
            raise FieldError(self.path, f"needs at least {node['minLength']} characters")
        if "maxLength" in node and len(text) > node["maxLength"]:
            raise FieldError(self.path, f"allows at most {node['maxLength']} characters")
        if "pattern" in node and not re.search(node["pattern"], text):
            raise FieldError(self.path, f"{text!r} does not match {node['pattern']}")
        return text.encode() if self.is_bytes else text

    def set_value(self, value: Any) -> None:
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        self.edit.setText("" if value is None else str(value))


class NumberEditor(Editor):
    """Integers and numbers, typed as text and checked against the bounds.

    A line edit rather than a spin box: 64-bit integers do not fit
    QSpinBox, and a typed bad value gets a message instead of being
    silently clamped."""

    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any]) -> None:
        super().__init__(path, node, defs)
        self.integer = node.get("type") == "integer"
        self.edit = QLineEdit()
        self.widget = self.edit
        bounds = _bounds_text(node)
        self.edit.setPlaceholderText(("integer" if self.integer else "number")
                                     + (f" ({bounds})" if bounds else ""))

    def value(self) -> Any:
        text = self.edit.text().strip()
        kind = "an integer" if self.integer else "a number"
        if not text:
            raise FieldError(self.path, f"needs {kind}")
        number: int | float
        try:
            number = int(text, 0) if self.integer else float(text)
        except ValueError:
            raise FieldError(self.path, f"{text!r} is not {kind}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise FieldError(self.path, f"{text!r} is not a finite number")
        node = self.node
        if "minimum" in node and number < node["minimum"]:
            raise FieldError(self.path, f"{number} is below the minimum {node['minimum']}")
        if "maximum" in node and number > node["maximum"]:
            raise FieldError(self.path, f"{number} is above the maximum {node['maximum']}")
        if "exclusiveMinimum" in node and number <= node["exclusiveMinimum"]:
            raise FieldError(self.path, f"{number} must be greater than "
                                        f"{node['exclusiveMinimum']}")
        if "exclusiveMaximum" in node and number >= node["exclusiveMaximum"]:
            raise FieldError(self.path, f"{number} must be less than {node['exclusiveMaximum']}")
        if "multipleOf" in node and number % node["multipleOf"]:
            raise FieldError(self.path, f"{number} is not a multiple of {node['multipleOf']}")
        return number

    def set_value(self, value: Any) -> None:
        self.edit.setText("" if value is None else str(value))


class BoundedIntEditor(Editor):
    """An integer with both bounds inside 32 bits: a spin box shows them."""

    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any]) -> None:
        super().__init__(path, node, defs)
        self.spin = QSpinBox()
        low = node.get("minimum", node.get("exclusiveMinimum", -_INT32 - 1) + 1)
        high = node.get("maximum", node.get("exclusiveMaximum", _INT32 + 1) - 1)
        self.spin.setRange(int(low), int(high))
        self.widget = self.spin

    def value(self) -> Any:
        return self.spin.value()

    def set_value(self, value: Any) -> None:
        self.spin.setValue(int(value))


class FloatRangeEditor(Editor):
    """A number with both bounds: a spin box."""

    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any]) -> None:
        super().__init__(path, node, defs)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(4)
        self.spin.setRange(float(node["minimum"]), float(node["maximum"]))
        self.widget = self.spin

    def value(self) -> Any:
        return self.spin.value()

    def set_value(self, value: Any) -> None:
        self.spin.setValue(float(value))


class BoolEditor(Editor):
    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any]) -> None:
        super().__init__(path, node, defs)
        self.box = QCheckBox()
        self.widget = self.box

    def value(self) -> Any:
        return self.box.isChecked()

    def set_value(self, value: Any) -> None:
        self.box.setChecked(bool(value))


class EnumEditor(Editor):
    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any]) -> None:
        super().__init__(path, node, defs)
        self.combo = QComboBox()
        self.choices = list(node["enum"])
        for choice in self.choices:
            self.combo.addItem(str(choice))
        self.widget = self.combo

    def value(self) -> Any:
        return self.choices[self.combo.currentIndex()]

    def set_value(self, value: Any) -> None:
        if value in self.choices:
            self.combo.setCurrentIndex(self.choices.index(value))


class JsonEditor(Editor):
    """Anything the other editors do not cover, as JSON text."""

    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any]) -> None:
        super().__init__(path, node, defs)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("JSON value")
        self.widget = self.edit

    def value(self) -> Any:
        text = self.edit.text().strip()
        if not text:
            raise FieldError(self.path, "needs a JSON value")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise FieldError(self.path, f"is not valid JSON ({exc.msg})") from None

    def set_value(self, value: Any) -> None:
        self.edit.setText(json.dumps(value))


class OptionalEditor(Editor):
    """``X | None``: unchecked sends null."""

    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any],
                 inner: Editor) -> None:
        super().__init__(path, node, defs)
        self.inner = inner
        self.widget = QWidget()
        row = QHBoxLayout(self.widget)
        row.setContentsMargins(0, 0, 0, 0)
        self.enabled = QCheckBox()
        self.enabled.setToolTip("Unchecked: no value (null)")
        self.enabled.setAccessibleName(f"{path}: give a value")
        row.addWidget(self.enabled)
        row.addWidget(inner.widget, 1)
        inner.widget.setEnabled(False)
        self.enabled.toggled.connect(inner.widget.setEnabled)

    def value(self) -> Any:
        return self.inner.value() if self.enabled.isChecked() else None

    def set_value(self, value: Any) -> None:
        self.enabled.setChecked(value is not None)
        if value is not None:
            self.inner.set_value(value)

    def mark(self, bad: bool) -> None:
        self.inner.mark(bad)


class ListEditor(Editor):
    """A list: one editor per item, with add and remove buttons."""

    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any]) -> None:
        super().__init__(path, node, defs)
        self.item_node = node.get("items", {})
        self.items: list[tuple[QWidget, Editor]] = []
        self.widget = QWidget()
        self.column = QVBoxLayout(self.widget)
        self.column.setContentsMargins(0, 0, 0, 0)
        self.add_button = QPushButton("Add item")
        self.add_button.setAccessibleName(f"{path}: add an item")
        self.add_button.clicked.connect(lambda: self.add_item())
        self.column.addWidget(self.add_button)

    def add_item(self, value: Any = _NO_DEFAULT) -> Editor:
        index = len(self.items)
        editor = make_editor(f"{self.path}[{index}]", self.item_node, self.defs)
        holder = QWidget()
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(editor.widget, 1)
        remove = QToolButton()
        remove.setText("\u2212")  # a real minus sign
        remove.setToolTip("Remove this item")
        remove.setAccessibleName(f"{self.path}[{index}]: remove")
        row.addWidget(remove)
        entry = (holder, editor)
        remove.clicked.connect(lambda: self._remove(entry))
        self.items.append(entry)
        self.column.insertWidget(self.column.count() - 1, holder)
        if value is not _NO_DEFAULT:
            editor.set_value(value)
        return editor

    def _remove(self, entry: tuple[QWidget, Editor]) -> None:
        if entry in self.items:
            self.items.remove(entry)
            entry[0].deleteLater()

    def value(self) -> Any:
        values = [editor.value() for _, editor in self.items]
        if "minItems" in self.node and len(values) < self.node["minItems"]:
            raise FieldError(self.path, f"needs at least {self.node['minItems']} items")
        if "maxItems" in self.node and len(values) > self.node["maxItems"]:
            raise FieldError(self.path, f"allows at most {self.node['maxItems']} items")
        return values

    def set_value(self, value: Any) -> None:
        for entry in list(self.items):
            self._remove(entry)
        for item in value or []:
            self.add_item(item)


class StructEditor(Editor):
    """A record: a form of its properties (nested records become groups)."""

    def __init__(self, path: str, node: dict[str, Any], defs: dict[str, Any],
                 *, top: bool = False) -> None:
        super().__init__(path, node, defs)
        self.fields: dict[str, Editor] = {}
        self.labels: dict[str, QLabel] = {}
        self.required = set(node.get("required", []))
        if top:
            self.widget = QWidget()
        else:
            box = QGroupBox(node.get("title", ""))
            self.widget = box
        form = QFormLayout(self.widget)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        if top:
            form.setContentsMargins(0, 0, 0, 0)
        self.form = form
        for name, prop in node.get("properties", {}).items():
            child_path = f"{path}.{name}" if path else name
            editor = make_editor(child_path, prop, defs)
            if "default" in prop:
                editor.set_value(prop["default"])
            required = name in self.required
            label = QLabel(name + (" *" if required else ""))
            tip = tooltip_for(name, prop, defs, required)
            label.setToolTip(tip)
            editor.widget.setToolTip(tip)
            editor.widget.setAccessibleName(name)
            editor.widget.setAccessibleDescription(describe_type(prop, defs))
            editor.widget.setObjectName(f"field:{child_path}")
            label.setBuddy(editor.widget)
            form.addRow(label, editor.widget)
            self.fields[name] = editor
            self.labels[name] = label

    def value(self) -> Any:
        out: dict[str, Any] = {}
        errors: list[FieldError] = []
        for name, editor in self.fields.items():
            try:
                out[name] = editor.value()
                editor.mark(False)
            except FieldError as exc:
                editor.mark(True)
                errors.append(exc)
        if errors:
            raise FormErrors(errors)
        return out

    def set_value(self, value: Any) -> None:
        for name, item in (value or {}).items():
            if name in self.fields:
                self.fields[name].set_value(item)


class FormErrors(FieldError):
    """Every bad field of a form at once."""

    def __init__(self, errors: list[FieldError]) -> None:
        flat: list[FieldError] = []
        for err in errors:
            flat.extend(err.errors if isinstance(err, FormErrors) else [err])
        self.errors = flat
        super().__init__("", "; ".join(str(e) for e in flat))


def make_editor(path: str, node: dict[str, Any], defs: dict[str, Any]) -> Editor:
    """The editor for one schema node."""
    node = resolve_ref(node, defs)
    if "anyOf" in node:
        options = [resolve_ref(n, defs) for n in node["anyOf"]]
        non_null = [n for n in options if n.get("type") != "null"]
        if len(non_null) == 1 and len(options) == 2:
            merged = {**non_null[0], **{k: v for k, v in node.items()
                                        if k not in ("anyOf", "default")}}
            return OptionalEditor(path, node, defs, make_editor(path, merged, defs))
        return JsonEditor(path, node, defs)
    if "enum" in node:
        return EnumEditor(path, node, defs)
    kind = node.get("type")
    if kind == "string":
        return TextEditor(path, node, defs)
    if kind == "integer":
        low = node.get("minimum", node.get("exclusiveMinimum"))
        high = node.get("maximum", node.get("exclusiveMaximum"))
        if low is not None and high is not None and low >= -_INT32 and high <= _INT32:
            return BoundedIntEditor(path, node, defs)
        return NumberEditor(path, node, defs)
    if kind == "number":
        if "minimum" in node and "maximum" in node:
            return FloatRangeEditor(path, node, defs)
        return NumberEditor(path, node, defs)
    if kind == "boolean":
        return BoolEditor(path, node, defs)
    if kind == "array":
        return ListEditor(path, node, defs)
    if kind == "object" and "properties" in node:
        return StructEditor(path, node, defs)
    return JsonEditor(path, node, defs)


class OperationForm(QWidget):
    """The form of one operation's parameters."""

    def __init__(self, params_schema: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.defs = params_schema.get("$defs", {})
        root = resolve_ref(params_schema, self.defs)
        self.root = StructEditor("", root, self.defs, top=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if not self.root.fields:
            none = QLabel("This operation takes no parameters.")
            none.setEnabled(False)
            layout.addWidget(none)
        layout.addWidget(self.root.widget)
        layout.addStretch(1)

    @property
    def fields(self) -> dict[str, Editor]:
        return self.root.fields

    def values(self) -> dict[str, Any]:
        """The parameters, validated; raises :class:`FormErrors`."""
        value: dict[str, Any] = self.root.value()
        return value

    def set_values(self, values: dict[str, Any]) -> None:
        self.root.set_value(values)
