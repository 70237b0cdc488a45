"""The scikit-learn comparison (benchmarks/sklearn_mlp.py) runs, on slices of the digits."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn", reason="the comparison needs the sklearn extra")

import nnx
from benchmarks.sklearn_mlp import digits_table, fit_pairs, fit_table, main
from nnx.errors import DatasetNotFound


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_scikit_learn_comparison_runs_on_slices_of_the_digits():
    (x, y), (x_test, y_test) = nnx.datasets.load_digits()
    settings = {"hidden_layer_sizes": (16,), "max_iter": 2, "random_state": 0}
    rows = fit_pairs((x[:300], y[:300], x_test[:100], y_test[:100]), 2, settings)
    assert [r["name"] for r in rows] == ["nnx", "scikit-learn", "scikit-learn", "nnx"]
    assert all(r["seconds"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    lines = fit_table(rows)
    assert len(lines) == 2 + 4 + 2 and "as fast" in lines[-1]
    cv = digits_table(x[:150], y[:150], 2)
    assert len(cv) == 4 and cv[2].startswith("| nnx |") and cv[3].startswith("| scikit-learn |")
    assert "mean over random states 0–1" in cv[0] and all(row.count("|") == 6 for row in cv)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_scikit_learn_comparison_writes_its_report_from_a_slice_of_fashion_mnist(tmp_path):
    try:
        nnx.datasets.load_fashion_mnist()
    except DatasetNotFound as exc:
        pytest.skip(f"Fashion-MNIST is not on this machine: {exc}")
    out = tmp_path / "report.md"
    assert main([str(out), "--rows", "400", "--repeats", "1", "--threads", "1"]) == 0
    report = out.read_text()
    assert "Fashion-MNIST, 400 training and 10,000 test images" in report and "| scikit-learn |" in report
