"""Shrinking keeps a call's options consistent with its input (``suites.findings.slicing``)."""

import numpy as np

from xentbench.suites.findings.slicing import Input, take_classes, take_hidden, take_rows

SPARSE, LINEAR = "sparse_softmax_cross_entropy", "linear_cross_entropy"


def _item() -> Input:
    logits = np.arange(12, dtype=np.float32).reshape(3, 4)
    options = {
        "reduction": "mean",
        "ignore_index": -100,
        "class_weight": np.array([1.0, 2.0, 3.0, 4.0], np.float32),
        "sample_weight": np.array([5.0, 6.0, 7.0], np.float32),
        "tangent": logits + 100,
    }
    return Input(logits, np.array([3, -100, 1]), options)


def test_dropping_rows_drops_their_weights_tangent_rows_and_ignored_labels():
    item = take_rows(SPARSE, _item(), [0, 2])
    assert item.labels.tolist() == [3, 1]
    assert item.options["sample_weight"].tolist() == [5.0, 7.0]
    assert item.options["tangent"].tolist() == (item.logits + 100).tolist()
    assert item.options["class_weight"].shape == (4,) and item.options["reduction"] == "mean"


def test_dropping_classes_renumbers_labels_and_drops_class_weights():
    item = take_classes(SPARSE, _item(), [1, 3])
    assert item.logits.tolist() == [[1, 3], [5, 7], [9, 11]]
    assert item.labels.tolist() == [1, -100, 0]  # the ignored row stays ignored
    assert item.options["class_weight"].tolist() == [2.0, 4.0]
    assert item.options["tangent"].tolist() == (item.logits + 100).tolist()


def test_a_candidate_dropping_a_kept_rows_class_is_refused():
    assert take_classes(SPARSE, _item(), [0, 1, 2]) is None  # row 0's class 3 is gone


def test_an_elementwise_cotangent_loses_its_columns_a_per_row_one_does_not():
    logits = np.zeros((2, 3))
    elementwise = Input(logits, None, {"cotangent": np.arange(6.0).reshape(2, 3)})
    assert take_classes("softmax", elementwise, [2]).options["cotangent"].tolist() == [[2], [5]]
    per_row = Input(logits, np.array([0, 0]), {"cotangent": np.array([1.0, 2.0])})
    assert take_classes(SPARSE, per_row, [0, 1]).options["cotangent"].tolist() == [1.0, 2.0]


def test_the_linear_op_drops_weight_and_bias_rows_and_hidden_units():
    weight, bias = np.arange(8.0).reshape(4, 2), np.arange(4.0)
    item = Input(np.ones((2, 2)), np.array([2, -100]), {"weight": weight, "bias": bias})
    taken = take_classes(LINEAR, item, [2, 3])
    assert taken.labels.tolist() == [0, -100]
    assert taken.options["weight"].tolist() == [[4, 5], [6, 7]]
    assert taken.options["bias"].tolist() == [2, 3]
    assert take_hidden(LINEAR, taken, [1]).options["weight"].tolist() == [[5], [7]]
    assert taken.shape == (2, 2, 2)
