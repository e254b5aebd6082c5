"""``edgekit check``: the static Edge TPU compatibility prediction.

Real bundles built from every supported algorithm must be predicted 100 % mappable.
Deliberately incompatible models are built here with real TensorFlow (small
tf.functions converted by tf.lite.TFLiteConverter, as the build does) and must be
reported with the right op and reason. No compiler is involved: these tests check
edgekit's reading of Coral's published rules, not the compiler's behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import AGENT_CASES, REPO, run_cli

from edgekit.core.errors import BundleError
from edgekit.edgetpu.check import CheckReport, check_model, check_path, format_report

# -- real bundles --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n, case in AGENT_CASES.items() if case.fully_on_edgetpu))
def test_bundles_of_every_algorithm_are_fully_mappable(built_bundle, name):
    report = check_path(built_bundle(name).bundle_dir)
    assert report.fully_mappable, format_report(report)
    assert report.tpu_share == 1.0 and report.cut_index is None
    assert report.ops and all(op.on_tpu and op.reason == "" for op in report.ops)
    assert "FULLY_CONNECTED" in {op.op for op in report.ops}
    assert report.risks == (), "the build quantizes fully-connected weights per tensor"
    assert 0 < report.tpu_parameter_bytes == report.parameter_bytes < report.cache_bytes
    assert "(100%)" in format_report(report)


@pytest.mark.parametrize("name", sorted(n for n, case in AGENT_CASES.items() if not case.fully_on_edgetpu))
def test_bundles_with_an_op_the_edgetpu_lacks_are_cut_there(built_bundle, name):
    """Activations the Edge TPU lacks: the ops before the first one map, the rest run on the CPU."""
    report = check_path(built_bundle(name).bundle_dir)
    assert not report.fully_mappable and report.cut_index is not None
    cut = report.ops[report.cut_index]
    assert cut.problems and "not in the Edge TPU's supported operations" in cut.problems[0]
    assert all(op.on_tpu == (op.index < report.cut_index) for op in report.ops)
    assert report.ops[0].op == "FULLY_CONNECTED" and report.ops[0].on_tpu
    assert f"graph cut at #{cut.index} {cut.op}" in report.placement
    assert f"runs where: {report.placement}" in format_report(report)


def test_check_of_a_bundle_verifies_the_model_hash(built_bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(built_bundle("ppo-pendulum").bundle_dir, copy)
    with open(copy / "model_int8.tflite", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="sha256"):
        check_path(copy)


# -- incompatible models built with real TensorFlow ---------------------------------------------


@pytest.fixture(scope="module")
def tflite_model(tmp_path_factory) -> Callable[..., Path]:
    """``tflite_model(name, fn, shape, quantize=..., int8_io=..., per_tensor=...)`` -> .tflite path."""
    from edgekit.host.tensorflow_import import import_tensorflow

    tf = import_tensorflow()
    out = tmp_path_factory.mktemp("tflite")

    def convert(name: str, fn, shape, quantize: bool = True, int8_io: bool = True,
                per_tensor: bool = True) -> Path:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
        if quantize:
            rng = np.random.default_rng(0)
            calibration_shape = [1 if d is None else d for d in shape]
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [rng.standard_normal(calibration_shape).astype(np.float32)] for _ in range(16))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
            converter._experimental_disable_per_channel = per_tensor
        path = out / f"{name}.tflite"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
            path.write_bytes(converter.convert())
        return path

    convert.tf = tf  # type: ignore[attr-defined]
    return convert


def _mlp(tf, middle=None, batch: int | None = 1):
    """A 3 -> 16 -> 2 MLP as a tf.function; ``middle`` replaces its tanh."""
    rng = np.random.default_rng(1)
    w1 = tf.constant(rng.standard_normal((3, 16)).astype(np.float32))
    w2 = tf.constant(rng.standard_normal((16, 2)).astype(np.float32))
    act = middle or tf.tanh

    @tf.function(input_signature=[tf.TensorSpec([batch, 3], tf.float32)])
    def mlp(x):
        return tf.matmul(act(tf.matmul(x, w1) + 0.1), w2)

    return mlp


def _assert_cut_at(report: CheckReport, index: int, op: str, *needles: str) -> None:
    text = format_report(report)
    assert not report.fully_mappable, text
    assert report.cut_index == index, text
    assert report.ops[index].op == op, text
    assert not report.ops[index].on_tpu, text
    for needle in needles:
        assert needle in report.ops[index].reason, text
    assert all(op.on_tpu for op in report.ops[:index]), text
    assert not any(op.on_tpu for op in report.ops[index:]), text
    assert "NOT fully mappable" in text


def test_float_model_is_not_quantized(tflite_model):
    tf = tflite_model.tf
    report = check_model(tflite_model("float", _mlp(tf), [1, 3], quantize=False))
    _assert_cut_at(report, 0, "FULLY_CONNECTED", "float32, not 8-bit quantized", "input #0", "weights", "output")
    assert report.tpu_share == 0.0
    assert any("Model not quantized" in note for note in report.notes)


def test_unsupported_op_cuts_the_graph(tflite_model):
    tf = tflite_model.tf
    report = check_model(tflite_model("exp", _mlp(tf, middle=tf.exp), [1, 3]))
    assert [op.op for op in report.ops] == ["FULLY_CONNECTED", "EXP", "FULLY_CONNECTED"]
    _assert_cut_at(report, 1, "EXP", "EXP is not in the Edge TPU's supported operations")
    after = report.ops[2]
    assert after.mappable and not after.on_tpu
    assert "after the graph cut at op #1" in after.reason
    assert report.tpu_op_count == 1
    assert 0 < report.tpu_parameter_bytes < report.parameter_bytes  # only the first layer's weights
    assert "(33%)" in format_report(report)


def test_rank_5_tensor_breaks_the_rank_rule(tflite_model):
    tf = tflite_model.tf

    @tf.function(input_signature=[tf.TensorSpec([1, 2, 3, 4, 5], tf.float32)])
    def rank5(x):
        return tf.tanh(x * 1.5 + 0.2)

    report = check_model(tflite_model("rank5", rank5, [1, 2, 3, 4, 5]))
    first = report.ops[0].op
    _assert_cut_at(report, 0, first, "rank 5 shape [1, 2, 3, 4, 5]", "only the 3 innermost dimensions may exceed 1")
    assert all("only the 3 innermost" in op.reason for op in report.ops)


def test_dynamic_batch_is_not_a_static_shape(tflite_model):
    tf = tflite_model.tf
    report = check_model(tflite_model("dynamic", _mlp(tf, batch=None), [None, 3]))
    _assert_cut_at(report, 0, "FULLY_CONNECTED", "input #0: dynamic shape [-1, 3]")


def test_rank_3_dense_gets_keep_num_dims_and_a_newer_op_version(tflite_model):
    """The converter trap from the notes: a Dense on a rank-3 input keeps its dims (op version 5)."""
    tf = tflite_model.tf
    w = tf.constant(np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 3], tf.float32)])
    def dense3(x):
        return tf.tanh(tf.tensordot(x, w, axes=1) + 0.1)

    report = check_model(tflite_model("dense3", dense3, [1, 4, 3]))
    _assert_cut_at(report, 0, "FULLY_CONNECTED", "keep_num_dims=True", "not one-dimensional")


@pytest.mark.parametrize("name,body,shape,op,needle", [
    ("softmax-2d", lambda tf, x: tf.nn.softmax(x * 2.0, axis=-1), [1, 4, 8], "SOFTMAX", "is not 1-D"),
    ("strided", lambda tf, x: tf.tanh(x[:, ::2]), [1, 8], "STRIDED_SLICE", "strides must all be 1"),
    ("mean-batch", lambda tf, x: tf.reduce_mean(x * 2.0, axis=0, keepdims=True), [4, 8], "MEAN",
     "operates on the batch dimension"),
])
def test_documented_op_limitations(tflite_model, name, body, shape, op, needle):
    tf = tflite_model.tf
    fn = tf.function(lambda x: body(tf, x), input_signature=[tf.TensorSpec(shape, tf.float32)])
    report = check_model(tflite_model(name, fn, shape))
    index = [o.op for o in report.ops].index(op)
    _assert_cut_at(report, index, op, needle)


def test_float_input_and_output_stay_on_the_cpu_without_cutting(tflite_model):
    tf = tflite_model.tf
    report = check_model(tflite_model("float-io", _mlp(tf), [1, 3], int8_io=False))
    names = [op.op for op in report.ops]
    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE", names
    assert not report.ops[0].on_tpu and "model input" in report.ops[0].reason
    assert not report.ops[-1].on_tpu and "model output" in report.ops[-1].reason
    assert all(op.on_tpu for op in report.ops[1:-1]), format_report(report)
    assert report.cut_index is None and not report.fully_mappable


def test_per_channel_fully_connected_weights_are_a_risk(tflite_model):
    tf = tflite_model.tf
    report = check_model(tflite_model("per-channel", _mlp(tf), [1, 3], per_tensor=False))
    assert report.fully_mappable, format_report(report)
    assert any("per-channel weights" in risk for risk in report.risks)


def test_not_a_tflite_file(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"definitely not a flatbuffer")
    with pytest.raises(BundleError, match="not a TFLite model"):
        check_model(bad)


def test_check_module_does_not_import_tensorflow_or_torch(built_bundle):
    bundle = built_bundle("ppo-pendulum").bundle_dir
    code = ("import sys; from edgekit.edgetpu.check import check_path; r = check_path(sys.argv[1]); "
            "print(r.fully_mappable, 'tensorflow' in sys.modules, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False", "False"]


# -- the command line ----------------------------------------------------------------------------


def test_cli_check_on_a_real_bundle(built_bundle):
    proc = run_cli("check", str(built_bundle("ppo-pendulum").bundle_dir))
    assert proc.returncode == 0, proc.stderr
    assert "100" in proc.stdout and "FULLY_CONNECTED" in proc.stdout
    proc = run_cli("check", str(built_bundle("ppo-pendulum").bundle_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["fully_mappable"] is True and data["tpu_share"] == 1.0


def test_cli_check_on_the_float_model_fails(tflite_model):
    path = tflite_model("float-cli", _mlp(tflite_model.tf), [1, 3], quantize=False)
    proc = run_cli("check", str(path))
    assert proc.returncode != 0
    assert "NOT fully mappable" in proc.stdout and "float32" in proc.stdout
    assert "Traceback" not in proc.stderr
