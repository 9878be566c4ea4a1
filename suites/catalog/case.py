"""One accuracy case and one table row (a scenario): frozen, with deterministic inputs.

A case names a logits generator (``GENERATORS`` of ``suites.catalog.generators``) with frozen
parameters and, for labelled ops, a label generator (``LABELS[op]``) that may look at the logits
(the argmax class, the masked classes). Inputs are drawn in float64 from a stream seeded by
``(seed, crc32(case.id))``, so a case draws the same numbers in every dtype, and are then
rounded to the dtype once; the reference is computed on exactly those rounded arrays.
Generators that depend on the dtype (near its max, one ULP apart, subnormal) scale by the
dtype's limits from ``finfo``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from xentbench.adapters.base import LABELLED_OPS, OPS
from xentbench.reference.dtypes import DTYPES, finfo, numpy_dtype
from xentbench.reference.evaluate import LINEAR_OP
from xentbench.reference.evaluate import quantities as reference_quantities
from xentbench.reference.options import ACCEPTED, OPTION_NAMES
from xentbench.suites.catalog import option_cases
from xentbench.suites.catalog.generators import GENERATORS, LABELS, Draw, saved_labels
from xentbench.suites.catalog.linear import IGNORE_INDEX, LINEAR_GENERATORS, LinearDraw

FAMILIES: tuple[str, ...] = (
    "benign",
    "extreme",
    "special",
    "soft_labels",
    "size",
    "sigmoid",
    "options",
    "linear",
    "hunted",
)
SOFTMAX_FAMILY: tuple[str, ...] = OPS[:5]
LOGITS_OPS: tuple[str, ...] = tuple(op for op in OPS if op != LINEAR_OP)  # ops taking logits
LABELLED_SOFTMAX: tuple[str, ...] = ("softmax_cross_entropy", "sparse_softmax_cross_entropy")
NOT_FLOAT16: tuple[str, ...] = ("bfloat16", "float32", "float64")
SOFT: tuple[str, ...] = ("softmax_cross_entropy",)
SPARSE: tuple[str, ...] = ("sparse_softmax_cross_entropy",)
SIGMOID_OP: tuple[str, ...] = ("sigmoid_cross_entropy",)


# The case --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Drawing:
    """What a case and a table row both state, by keyword: sizes, dtypes and extras.

    ``invalid`` marks input outside the op's domain, where raising is the right answer.
    The options family (``suites.catalog.option_tables``) sets the quantities evaluated
    (empty: value, and grad where the op has a plain gradient), the fraction of sparse labels
    set to the ignored id, and a trailing axis of this size with the classes moved to axis 1
    ([batch, classes, depth], with class_axis=1). linear_cross_entropy only: features d, a
    bias, and the share of padding rows (labelled IGNORE_INDEX, passed as "ignore_index").
    """

    batch: int = 4
    classes: int = 16
    dtypes: tuple[str, ...] = DTYPES
    invalid: bool = False
    quantities: tuple[str, ...] = ()
    ignored: float = 0.0
    depth: int = 0
    hidden: int = 0
    bias: bool = False
    padding: float = 0.0


@dataclass(frozen=True)
class Case(Drawing):
    """One accuracy case: an op, a family, and how to draw its inputs (see the module docstring).

    ``labels`` is the key of the label generator in ``LABELS[op]`` (ignored by unlabelled
    ops); ``options`` are the call options, arrays as "@generator" (``option_cases.ARRAYS``).
    """

    op: str
    family: str
    name: str
    generator: str
    params: tuple[tuple[str, object], ...] = ()
    why: str = ""
    labels: str = "random"
    options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError(f"case {self.id}: {'; '.join(problems)}")

    def _problems(self) -> Iterator[str]:
        if self.op not in OPS:
            yield f"unknown op {self.op!r}; valid: {', '.join(OPS)}"
        if self.family not in FAMILIES:
            yield f"unknown family {self.family!r}; valid: {', '.join(FAMILIES)}"
        generators = LINEAR_GENERATORS if self.op == LINEAR_OP else GENERATORS
        if self.generator not in generators:
            yield f"unknown generator {self.generator!r}; valid: {', '.join(generators)}"
        if (self.op == LINEAR_OP) != (self.hidden > 0):
            yield "linear_cross_entropy cases, and only they, need hidden > 0"
        if not self.dtypes or set(self.dtypes) - set(DTYPES):
            yield f"dtypes {self.dtypes} must be a non-empty subset of {DTYPES}"
        if self.op in LABELS and self.labels not in (*LABELS[self.op], "saved"):
            yield f"unknown {self.op} labels {self.labels!r}; valid: {', '.join(LABELS[self.op])}"
        if self.invalid and self.op != "sparse_softmax_cross_entropy":
            yield "only sparse labels can be invalid"
        if min(self.batch, self.classes) < 1:
            yield f"batch {self.batch} and classes {self.classes} must be positive"
        names = dict(self.options)
        if set(names) - set(OPTION_NAMES):
            yield f"unknown options {sorted(set(names) - set(OPTION_NAMES))}"
        if self.depth and names.get("class_axis") != 1:
            yield "a depth needs class_axis=1"
        if self.ignored and "ignore_index" not in names:
            yield "ignored labels need ignore_index"

    @property
    def evaluated_quantities(self) -> tuple[str, ...]:
        """The quantities this case defines (see ``quantities``); a case without a bias has
        no bias gradient."""
        quantities = self.quantities or reference_quantities(self.op)
        return tuple(q for q in quantities if q != "grad_bias" or self.bias)

    @property
    def id(self) -> str:
        return f"{self.op}/{self.family}/{self.name}"

    def inputs(self, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits ``[batch, classes]`` in ``dtype`` and labels (None, int64 ids, or ``dtype``);
        for the linear op the hidden ``[batch, hidden]`` in their place (see ``call_options``)."""
        if self.op == LINEAR_OP:
            hidden, labels, _ = self.linear_inputs(dtype, seed)
            return hidden, labels
        _, logits, labels = self._draw(dtype, seed)
        target = numpy_dtype(dtype)
        if labels is not None:
            labels = labels.astype(np.int64 if labels.dtype.kind in "iu" else target)
        return logits.astype(target), labels

    def call_options(self, dtype: str, seed: int, quantity: str) -> dict[str, object]:
        """The call options for ``quantity`` (arrays drawn after the inputs, rounded to
        ``dtype`` once): the options family's, the linear op's weight, bias and ignore_index,
        or {} for every other case."""
        if self.op == LINEAR_OP:
            return self.linear_inputs(dtype, seed)[2]
        if not self.options:
            return {}
        rng, logits, labels = self._draw(dtype, seed)
        drawn = option_cases.draw_options(self, rng, logits, labels, quantity)
        target = numpy_dtype(dtype)
        return {
            name: value.astype(target) if isinstance(value, np.ndarray) else value
            for name, value in drawn.items()
        }

    def _draw(self, dtype: str, seed: int):
        """(the stream, float64 logits, labels as drawn) in the case's layout."""
        target, rng = self._stream(dtype, seed)
        limits = finfo(target)
        rows = self.batch * max(self.depth, 1)
        draw = Draw(
            rng,
            (rows, self.classes),
            float(limits.max),
            float(limits.eps),
            float(limits.smallest_subnormal),
        )
        logits = GENERATORS[self.generator](draw, **dict(self.params))
        labels = None
        if self.op in LABELS and self.labels == "saved":  # a promoted hunted input's labels
            labels = saved_labels(**dict(self.params))
        elif self.op in LABELS:
            labels = LABELS[self.op][self.labels](rng, logits)
        if self.ignored:
            labels = option_cases.ignore_labels(rng, labels, self.ignored)
        if self.depth:  # rows (b, d) -> [batch, classes, depth]
            logits = logits.reshape(self.batch, self.depth, -1).transpose(0, 2, 1)
            if labels is not None and labels.ndim == 2:
                labels = labels.reshape(self.batch, self.depth, -1).transpose(0, 2, 1)
            elif labels is not None:
                labels = labels.reshape(self.batch, self.depth)
        return rng, np.asarray(logits), labels

    def _stream(self, dtype: str, seed: int) -> tuple[np.dtype, np.random.Generator]:
        if dtype not in self.dtypes:
            raise ValueError(f"case {self.id} is not defined for {dtype}; it has {self.dtypes}")
        return numpy_dtype(dtype), np.random.default_rng([seed, zlib.crc32(self.id.encode())])

    def linear_inputs(self, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """(hidden [N, d], int64 labels [N], options) of a linear case, rounded to ``dtype``."""
        target, rng = self._stream(dtype, seed)
        draw = LinearDraw(rng, self.batch, self.classes, self.hidden)
        hidden, weight, labels = LINEAR_GENERATORS[self.generator](draw, **dict(self.params))
        options: dict[str, object] = {"weight": weight.astype(target)}
        if self.bias:
            options["bias"] = rng.normal(size=self.classes).astype(target)
        if self.padding:
            padded = rng.random(self.batch) < self.padding
            labels = np.where(padded, IGNORE_INDEX, labels)
            options["ignore_index"] = IGNORE_INDEX
        for name, value in self.options:  # the LLM head's: scalars, or "@name" one per row
            if isinstance(value, str) and value.startswith("@"):
                value = option_cases.ARRAYS[value[1:]](rng, None, labels, (self.batch,))
                value = value.astype(target)
            options[name] = value
        return hidden.astype(target), labels.astype(np.int64), options


# Declarative tables: scenarios expanded over the ops they apply to -----------------------


@dataclass(frozen=True)
class Scenario(Drawing):
    """A case without its op and family: one row of a table."""

    name: str
    generator: str
    why: str
    params: dict[str, object] = field(default_factory=dict)
    labels: str = "random"
    ops: tuple[str, ...] = SOFTMAX_FAMILY
    options: dict[str, object] = field(default_factory=dict)

    def cases(self, family: str) -> list[Case]:
        """One case per op, each keeping only what its op takes (labels, options, ignored)."""
        shared = {f.name: getattr(self, f.name) for f in fields(Drawing)}
        return [
            Case(
                op=op,
                family=family,
                name=self.name,
                generator=self.generator,
                params=tuple(sorted(self.params.items())),
                why=self.why,
                labels=self.labels if op in LABELLED_OPS else "random",
                options=self._options_for(op),
                **{**shared, "ignored": self.ignored if op == SPARSE[0] else 0.0},
            )
            for op in self.ops
        ]

    def _options_for(self, op: str) -> tuple[tuple[str, object], ...]:
        """The options ``op`` accepts (ignore_index is for sparse labels only)."""
        accepted = ACCEPTED.get(op, ())
        kept = {name: value for name, value in self.options.items() if name in accepted}
        if op != "sparse_softmax_cross_entropy":
            kept.pop("ignore_index", None)
        return tuple(sorted(kept.items()))
