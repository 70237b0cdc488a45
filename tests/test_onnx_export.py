"""ONNX export: onnxruntime gives what nnx gives, for every layer type and task, through the API,
the model files and the ``nnx export`` command; bad inputs and unexportable models fail loudly."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import nnx
from nnx.errors import ConfigError, ExportError
from nnx.layers import LAYER_TYPES, Layer, ReLU
from nnx.onnx_export import CONVERTERS, to_onnx
from tests.test_cli import main_in_process

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra: pip install 'nnx[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the exported graphs are run by onnxruntime (the test extra)")

TASKS = ("classification", "binary", "regression")
TOL = {"rtol": 1e-5, "atol": 1e-5}


def every_layer_model(dtype: str = "float32") -> nnx.Sequential:
    """A model of every layer type, ending in Softmax, with random biases, gains and shifts (not 0 and 1)."""
    model = nnx.Sequential(
        nnx.Dense(12, 16), nnx.ReLU(),
        nnx.Dense(16, 16), nnx.Tanh(),
        nnx.Dense(16, 16), nnx.Sigmoid(),
        nnx.Dense(16, 16), nnx.GELU(approximate="none"),
        nnx.Dense(16, 16), nnx.GELU(approximate="tanh"),
        nnx.Dense(16, 16), nnx.LeakyReLU(negative_slope=0.2), nnx.LayerNorm(16), nnx.Dropout(0.3),
        nnx.Dense(16, 5), nnx.Softmax(),
        backend="numpy", seed=1, dtype=dtype,
    )  # fmt: skip
    rng = np.random.default_rng(1)
    model.set_weights({k: v + 0.3 * rng.standard_normal(v.shape) for k, v in model.get_weights().items()})
    model.class_names = ["a", "b", "c", "d", "e"]
    return model


def session(model_or_path: nnx.Sequential | str, opset: int = 17) -> ort.InferenceSession:
    """An onnxruntime CPU session of an exported model (or of an .onnx file), on one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    source = model_or_path if isinstance(model_or_path, str) else to_onnx(model_or_path, opset).SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def nnx_logits(model: nnx.Sequential, x: np.ndarray) -> np.ndarray:
    return model.backend.to_numpy(model.forward(model.backend.asarray(x, model.dtype), logits=True)).copy()


def export(capsys, model_path, out, *flags: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``nnx export MODEL OUT FLAGS``, run in this process."""
    return main_in_process(capsys, "export", str(model_path), str(out), *flags)


def inputs(n: int, features: int = 12) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, features)).astype(np.float32)


def test_every_layer_type_has_a_converter():
    assert set(CONVERTERS) == set(LAYER_TYPES.values())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opset", [17, 20])  # GELU from primitive operators, then as one Gelu node
@pytest.mark.parametrize("task", TASKS)
def test_onnxruntime_matches_predict_and_logits_for_every_layer_type(task, opset, dtype):
    model = every_layer_model(dtype)
    model.task = task
    run = session(model, opset)
    names = [o.name for o in run.get_outputs()]
    assert names == (["outputs"] if task == "regression" else ["logits", "probabilities"])
    for n in (1, 1000):
        x = inputs(n)
        got = run.run(None, {"x": x})
        np.testing.assert_allclose(got[-1], model.predict(x), **TOL)
        if task != "regression":
            np.testing.assert_allclose(got[0], nnx_logits(model, x), **TOL)  # the final Softmax skipped
        assert all(out.shape == (n, 5) and out.dtype == np.float32 for out in got)


def test_the_graph_has_a_dynamic_batch_float32_weights_and_the_task_and_class_names():
    proto = to_onnx(every_layer_model("float64"), opset=17)
    onnx.checker.check_model(proto, full_check=True)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert proto.graph.input[0].name == "x" and dims[0].dim_param == "batch" and dims[1].dim_value == 12
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {t.data_type for t in proto.graph.initializer} == {onnx.TensorProto.FLOAT}
    assert [o.domain for o in proto.opset_import] == [""] and proto.opset_import[0].version == 17
    ops = {node.op_type for node in proto.graph.node}
    assert {"Gemm", "Relu", "Tanh", "Sigmoid", "Erf", "LeakyRelu", "LayerNormalization", "Softmax"} <= ops
    assert "Gelu" not in ops and "Dropout" not in ops
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta == {"task": "classification", "class_names": json.dumps(["a", "b", "c", "d", "e"])}
    assert "Gelu" in {node.op_type for node in to_onnx(every_layer_model(), opset=20).graph.node}


def test_nnx_export_of_a_model_trained_on_the_digits_reproduces_predict(tmp_path, capsys):
    (x_train, y_train), (x_test, _) = nnx.datasets.load_digits()
    model = nnx.Sequential(nnx.Dense(64, 32), nnx.ReLU(), nnx.Dense(32, 10), backend="numpy", seed=0)
    model.fit(x_train, y_train, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1), epochs=2)
    model.class_names = nnx.datasets.class_names("digits")
    nnx.save(model, tmp_path / "digits.safetensors")
    code, out, err = export(capsys, tmp_path / "digits.safetensors", tmp_path / "d.onnx")
    assert code == 0, err
    assert out.startswith(f"wrote {tmp_path / 'd.onnx'}: ONNX opset 17, input x (batch, 64) float32")
    run = session(str(tmp_path / "d.onnx"))
    logits, probabilities = run.run(None, {"x": x_test})
    loaded = nnx.load(tmp_path / "digits.safetensors", backend="numpy")
    expected = loaded.predict(x_test)
    np.testing.assert_allclose(probabilities, expected, **TOL)
    np.testing.assert_allclose(logits, nnx_logits(loaded, x_test), **TOL)
    assert (probabilities.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert json.loads(run.get_modelmeta().custom_metadata_map["class_names"]) == [str(c) for c in range(10)]


@pytest.mark.parametrize(
    "layer",
    [
        nnx.Dropout(0.5), nnx.ReLU(), nnx.Tanh(), nnx.Sigmoid(), nnx.GELU(approximate="none"),
        nnx.GELU(approximate="tanh"), nnx.LeakyReLU(negative_slope=0.3), nnx.LayerNorm(8, eps=1e-3), nnx.Softmax(),
    ],
    ids=repr,
)  # fmt: skip
@pytest.mark.parametrize("task", TASKS)
def test_a_model_file_of_each_layer_type_exports(layer, task, tmp_path, capsys):
    model = nnx.Sequential(nnx.Dense(6, 8), layer, nnx.Dense(8, 3), nnx.Softmax(), backend="numpy", seed=2)
    rng = np.random.default_rng(2)
    model.set_weights({k: v + 0.5 * rng.standard_normal(v.shape) for k, v in model.get_weights().items()})
    model.task = task
    nnx.save(model, tmp_path / "m.safetensors")
    code, _, err = export(capsys, tmp_path / "m.safetensors", tmp_path / "m.onnx")
    assert code == 0, err
    x = inputs(50, 6)
    np.testing.assert_allclose(session(str(tmp_path / "m.onnx")).run(None, {"x": x})[-1], model.predict(x), **TOL)


def test_a_wrong_number_of_features_or_a_wrong_dtype_is_an_onnxruntime_error():
    run = session(every_layer_model())
    with pytest.raises(Exception, match="INVALID_ARGUMENT"):
        run.run(None, {"x": inputs(3, 11)})
    with pytest.raises(Exception, match="INVALID_ARGUMENT"):
        run.run(None, {"x": inputs(3).astype(np.float64)})


class Square(Layer):
    """A user's layer, y = x², which nnx cannot know how to write in ONNX."""

    def forward(self, x):
        return x * x


class CappedReLU(ReLU):
    """A subclass of an exportable layer may compute something else: it is not exported as its base."""


@pytest.mark.parametrize("custom", [Square, CappedReLU])
def test_an_unexportable_layer_raises_export_error_naming_it_and_writes_nothing(custom, tmp_path):
    model = nnx.Sequential(nnx.Dense(4, 4), nnx.ReLU(), custom(), nnx.Dense(4, 2), backend="numpy")
    with pytest.raises(ExportError, match=rf"layers\[2\] \({custom.__name__}\) cannot be exported to ONNX"):
        nnx.export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_without_the_onnx_extra_export_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    nnx.save(nnx.Sequential(nnx.Dense(4, 2), backend="numpy"), tmp_path / "m.safetensors")
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(ExportError, match=r"needs the onnx package: pip install 'nnx\[onnx\]'"):
        nnx.export_onnx(nnx.Sequential(nnx.Dense(4, 2), backend="numpy"), tmp_path / "m.onnx")
    code, _, err = export(capsys, tmp_path / "m.safetensors", tmp_path / "m.onnx")
    assert code == 1 and err.strip().startswith("nnx: error: exporting to ONNX needs") and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


def test_an_opset_out_of_range_is_a_config_error_and_a_usage_error_on_the_command_line(tmp_path, capsys):
    model = nnx.Sequential(nnx.Dense(4, 2), backend="numpy")
    for opset in (16, onnx.defs.onnx_opset_version() + 1, "17", True):
        with pytest.raises(ConfigError, match=r"opset must be an integer in \[17, "):
            to_onnx(model, opset)
    nnx.save(model, tmp_path / "m.safetensors")
    for args, message in [
        (["--opset", "16"], "--opset: opset must be an integer in [17, "),
        (["--opset", "0"], "argument --opset: must be an integer >= 1; got '0'"),
    ]:
        code, _, err = export(capsys, tmp_path / "m.safetensors", tmp_path / "m.onnx", *args)
        assert code == 2 and message in err
    code, _, err = export(capsys, tmp_path / "m.safetensors", tmp_path / "m.txt")
    assert code == 2 and "OUT must be a file name ending in .onnx; got" in err


@pytest.mark.parametrize("recipe", ["digits", "fashion-mnist", "regression"])
def test_the_default_model_of_every_recipe_exports_and_runs_as_in_nnx(capsys, tmp_path, recipe):
    """The models nnx train builds by default (digits; fashion-mnist and mnist share a recipe; a
    regressor), saved as nnx train saves them and exported by the command."""
    from nnx.recipes import RECIPES, make_model

    features, outputs = {"digits": (64, 10), "fashion-mnist": (784, 10), "regression": (13, 1)}[recipe]
    model = make_model(features, outputs, {**RECIPES[recipe], "seed": 0, "dtype": "float32"}, "numpy")
    model.task = "regression" if recipe == "regression" else "classification"
    nnx.save(model, tmp_path / "m.safetensors")
    code, _, err = export(capsys, tmp_path / "m.safetensors", tmp_path / "m.onnx")
    assert code == 0, err
    x = np.random.default_rng(0).random((300, features), dtype=np.float32)
    got = session(str(tmp_path / "m.onnx")).run(None, {"x": x})
    np.testing.assert_allclose(got[-1], model.predict(x), **TOL)  # probabilities, or the outputs
    assert len(got) == (1 if recipe == "regression" else 2)
