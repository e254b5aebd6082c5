"""The versioned schema of ``report.json``, as a JSON Schema (draft 2020-12) with every field described.

Readers (CI scripts, dashboards) rely on it, so it is versioned: a change that
removes or retypes a field bumps ``SCHEMA_VERSION``; adding fields does not.
``validate`` uses the ``jsonschema`` package when installed and otherwise a
small built-in checker for the keywords used here (type, const, enum,
properties, required, additionalProperties, items, minimum, maximum).
The prose version is ``docs/report.md``.
"""

from __future__ import annotations

from typing import Any

from edgekit.bundle.layout import REPORT_SCHEMA as SCHEMA_NAME
from edgekit.bundle.layout import REPORT_SCHEMA_VERSION as SCHEMA_VERSION
from edgekit.core.errors import BundleError

_NUM, _INT, _STR, _BOOL = "number", "integer", "string", "boolean"


def _f(kind: str | list[str], text: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": text, **extra}


def _share(text: str, nullable: bool = False) -> dict[str, Any]:
    return _f([_NUM, "null"] if nullable else _NUM, text, minimum=0)


def _obj(text: str, props: dict[str, Any], optional: tuple[str, ...] = (), extra: bool = False,
         nullable: bool = False) -> dict[str, Any]:
    return {"type": ["object", "null"] if nullable else "object", "description": text, "properties": props,
            "required": [k for k in props if k not in optional], "additionalProperties": extra}


def _arr(text: str, items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "description": text, "items": items}


def _pair(text: str) -> dict[str, Any]:
    return _arr(text + " [min, max]", {"type": _NUM})


_QUANT = _obj("int8 quantization: real = scale * (q - zero_point)", {
    "scale": _f(_NUM, "quantization step in real units", minimum=0),
    "zero_point": _f(_INT, "int8 level of real 0", minimum=-128, maximum=127),
})
_STATS = {
    "mean_abs_error": _f(_NUM, "mean |int8 - float|"),
    "p99_abs_error": _f(_NUM, "99th percentile of |int8 - float|"),
    "max_abs_error": _f(_NUM, "largest |int8 - float|"),
}
_RETURNS = _obj("one policy over the seeded episodes", {
    "returns": _arr("return of each episode, in seed order", {"type": _NUM}),
    "lengths": _arr("steps of each episode", {"type": _INT}),
    "mean": _f(_NUM, "mean return"),
    "std": _f(_NUM, "standard deviation of the returns (population)"),
}, nullable=True)
_CHECK = _obj("one threshold against its figure", {
    "name": _f(_STR, "max_action_error | min_agreement | min_score", enum=["max_action_error", "min_agreement",
                                                                          "min_score"]),
    "metric": _f(_STR, "what the figure is"),
    "comparison": _f(_STR, "how value must relate to threshold to pass", enum=["<=", ">="]),
    "value": _f([_NUM, "null"], "the measured figure; null when it does not apply or could not be measured"),
    "threshold": _f(_NUM, "the limit: the user's when enforced, else the advisory target"),
    "enforced": _f(_BOOL, "true when the user set it: failing it makes the command exit 3"),
    "status": _f(_STR, "pass | fail | n/a (not for this action kind) | undefined (could not be measured; "
                 "fails when enforced)", enum=["pass", "fail", "n/a", "undefined"]),
    "note": _f(_STR, "why a figure is missing or special; empty otherwise"),
})
_THRESHOLD_VALUES = {
    "max_action_error": _share("mean action error, share of the action range", nullable=True),
    "min_agreement": _share("argmax agreement on decisive states", nullable=True),
    "min_score": _f([_NUM, "null"], "normalized closed-loop score"),
}
_LAYER = _obj("one int8 activation tensor and its float counterpart", {
    "rank": _f(_INT, "1 = the layer that loses most by itself (largest local rmse_in_steps)", minimum=1),
    "position": _f(_INT, "order in the int8 graph: 0 = input quantization, k = the k-th op", minimum=0),
    "op": _f(_STR, "TFLite op producing the tensor (activations may be fused into FULLY_CONNECTED)"),
    "tensor": _f(_STR, "TFLite tensor name"),
    "float_ops": _arr("policy.onnx ops this int8 op stands for", {"type": _STR}),
    "size": _f(_INT, "elements per observation", minimum=1),
    "quantization_step": _f(_NUM, "the tensor's int8 scale", minimum=0),
    "zero_point": _f(_INT, "the tensor's int8 zero point"),
    "float_range": _pair("range of the float activation over the samples"),
    "rmse": _f([_NUM, "null"], "local: RMSE of the int8 output vs the float layer fed the int8 input"),
    "max_abs_error": _f([_NUM, "null"], "local: largest absolute error"),
    "mean_error": _f([_NUM, "null"], "local: mean signed error (bias)"),
    "rmse_in_steps": _f([_NUM, "null"], "local RMSE / quantization_step; about 0.29 when only rounding"),
    "max_error_in_steps": _f([_NUM, "null"], "local largest error / quantization_step"),
    "clipped_share": _share("share of local float values outside the tensor's int8 range", nullable=True),
    "accumulated_rmse": _f(_NUM, "RMSE vs the float model fed the float observation (drift so far)"),
    "accumulated_max_abs_error": _f(_NUM, "largest absolute accumulated error"),
    "accumulated_rmse_in_steps": _f(_NUM, "accumulated_rmse / quantization_step"),
})
_FEATURE = _obj("one observation feature", {
    "index": _f(_INT, "position in the flat features (the flattened observation)", minimum=0),
    "name": _f(_STR, "obs[i] (obs[i,j] for multi-dimensional observations); obs==k for class k of a Discrete "
               "one-hot, obs[i]==k of MultiDiscrete branch i; a Dict key in place of obs"),
    "calibration_range": _pair("range in the calibration set"),
    "held_out_range": _pair("range in the held-out set"),
    "int8_range": _pair("range the int8 input can hold, in observation units"),
    "int8_step": _f(_NUM, "int8 input step in observation units", minimum=0),
    "held_out_levels": _pair("int8 levels of the held-out values before saturation (outside -128..127 = clipped)"),
    "outside_calibration_share": _share("share of held-out values outside the calibration range"),
    "saturated_share": _share("share of held-out values clipped to -128 or 127"),
    "max_clipped_steps": _f(_NUM, "largest distance beyond -128..127 of a held-out value, in input steps",
                            minimum=0),
    "flagged": _f(_BOOL, "true when a held-out value is clipped by more than one input step"),
})
_DISCRETE_GROUP = _obj("one one-hot branch (a Discrete, one MultiDiscrete branch) or one MultiBinary part", {
    "name": _f(_STR, "obs, obs[i] (MultiDiscrete branch i), or the Dict key"),
    "kind": _f(_STR, "one_hot | binary", enum=["one_hot", "binary"]),
    "features": _arr("feature names: obs==k (class k) or obs[i] (bit i)", {"type": _STR}),
    "calibration_on": _arr("per feature: calibration observations where it is 1", {"type": _INT}),
    "held_out_on": _arr("per feature: held-out observations where it is 1", {"type": _INT}),
    "unseen_in_calibration": _arr("features on in the held-out set but never in the calibration set",
                                  {"type": _STR}),
    "int8_levels": _arr("per feature: [level of 0, level of 1], the int8 input levels before rounding",
                        _arr("two levels", {"type": _NUM})),
    "exact_levels": _f(_BOOL, "true when the int8 input carries 0 and 1 exactly: integer levels inside "
                       "-128..127 (with a split input, a half level is carried exactly by the fine part)"),
})

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": f"{SCHEMA_NAME} v{SCHEMA_VERSION}",
    "description": "How far a bundle's int8 policy is from the float policy (written by `edgekit report`).",
    "type": "object",
    "required": ["schema", "schema_version", "created", "bundle", "reference", "validation", "closed_loop",
                 "layers", "coverage", "thresholds", "notes", "timings_s", "versions"],
    "additionalProperties": True,
    "properties": {
        "schema": _f(_STR, "always edgekit-quantization-report", const=SCHEMA_NAME),
        "schema_version": _f(_INT, "bumped when a field is removed or retyped", const=SCHEMA_VERSION),
        "created": _f(_STR, "ISO-8601 UTC time the report was made"),
        "bundle": _obj("the bundle measured (from its manifest)", {
            "path": _f(_STR, "absolute bundle directory"),
            "created": _f(_STR, "when the bundle was built"),
            "env_id": _f(_STR, "Gymnasium id the bundle was calibrated in"),
            "algorithm": _f(_STR, "SB3 algorithm"),
            "source": _f("object", "the model.zip it was built from: file, sha256, algorithm, ..."),
            "observation_space": _f("object", "manifest space description"),
            "action_space": _f("object", "manifest space description"),
            "output": _f(_STR, "what the network emits: actions | squashed_actions | logits | q_values | "
                         "multi_logits | bernoulli_logits"),
            "postprocess": _f(_STR, "clip | unscale | argmax | multi_argmax | threshold"),
            "model_file": _f(_STR, "the int8 model measured"),
            "input_quantization": _QUANT,
            "output_quantization": _QUANT,
            "conditioning": _f("object", "how the float actor was rewritten before int8"),
        }),
        "reference": _obj("what the int8 policy is compared with", {
            "actions": _f(_STR, "sb3_predict: SB3 model.predict(obs, deterministic=True) of --model; policy_onnx: "
                          "the bundle's conditioned float actor, post-processed", enum=["sb3_predict", "policy_onnx"]),
            "raw_outputs": _f(_STR, "always policy_onnx: raw outputs live in the conditioned network's units",
                              const="policy_onnx"),
            "model": _f([_STR, "null"], "absolute path of --model, or null"),
            "model_sha256": _f([_STR, "null"], "sha256 of --model, or null"),
        }),
        "validation": _obj("numeric error on the held-out observations (edgekit.core.metrics)", {
            "samples": _f(_INT, "held-out observations compared", minimum=1),
            "observation_set": _f(_STR, "always held_out: never the calibration set", const="held_out"),
            "raw_output": _obj("raw network outputs (Q-values, logits, actions before post-processing)", {
                **_STATS,
                "quantization_step": _f(_NUM, "the int8 output tensor's step", minimum=0),
                "max_error_in_steps": _f(_NUM, "max_abs_error / quantization_step"),
                "float_range": _pair("range of the float outputs"),
            }, extra=True),
            "continuous": _obj("Box actions: error of the post-processed actions", {
                "per_dimension": _arr("one entry per action dimension", _obj("one action dimension", {
                    **_STATS,
                    "mean_share_of_range": _share("mean error / (high - low)", nullable=True),
                    "p99_share_of_range": _share("p99 error / (high - low)", nullable=True),
                    "max_share_of_range": _share("max error / (high - low)", nullable=True),
                }, extra=True)),
                "mean_share_of_range": _share("mean over dimensions and samples; the max-action-error figure",
                                              nullable=True),
                "p99_share_of_range": _share("99th percentile", nullable=True),
                "max_share_of_range": _share("largest", nullable=True),
            }, extra=True),
            "discrete": _obj("Discrete, MultiDiscrete and MultiBinary actions: decision agreement. For "
                             "MultiDiscrete (an argmax per branch) and MultiBinary (a sign per bit) every figure "
                             "but action_agreement counts (state, branch) decisions", {
                "agreement": _share("share of decisions where int8 and float pick the same action"),
                "decisive_share": _share("share of decisions whose best two float outputs (of the branch) differ "
                                         "by >= 1 % of the outputs' 1st-99th percentile spread (MultiBinary: "
                                         "abs(logit) >= 1 % of the bit's logit spread)"),
                "decisive_agreement": _share("agreement on decisive decisions; the min-agreement figure",
                                             nullable=True),
                "disagreements": _f(_INT, "decisions where the actions differ", minimum=0),
                "float_gap_median": _f(_NUM, "median gap between the best two float outputs (MultiBinary: abs(logit))"),
                "disagreement_float_gap": _obj("float gap where the actions differ (small = harmless tie)", {
                    "median": _f(_NUM, "median"), "p90": _f(_NUM, "90th percentile"), "max": _f(_NUM, "largest"),
                }, extra=True),
                "action_agreement": _share("MultiDiscrete / MultiBinary: share of states where the whole action "
                                           "(every branch) agrees"),
                "decision": _f(_STR, "MultiDiscrete / MultiBinary: what one decision is"),
                "branches": _arr("MultiDiscrete / MultiBinary: one entry per branch or bit", _obj("one branch", {
                    "name": _f(_STR, "branch k (MultiDiscrete) or bit k (MultiBinary)"),
                    "agreement": _share("share of states where this branch agrees"),
                    "decisive_share": _share("share of states where this branch's decision is decisive"),
                    "decisive_agreement": _share("agreement on those", nullable=True),
                    "disagreements": _f(_INT, "states where this branch differs", minimum=0),
                }, extra=True)),
            }, optional=("disagreement_float_gap", "action_agreement", "decision", "branches"), extra=True),
        }, optional=("continuous", "discrete"), extra=True),
        "closed_loop": _obj("float, int8 and random policies over the same seeded episodes", {
            "status": _f(_STR, "ok | skipped", enum=["ok", "skipped"]),
            "env_id": _f([_STR, "null"], "env played"),
            "episodes": _f(_INT, "episodes per policy", minimum=0),
            "seeds": _arr("reset seed of each episode (seed + i)", {"type": _INT}),
            "float": _RETURNS,
            "int8": _RETURNS,
            "random": _RETURNS,
            "normalized_score": _f([_NUM, "null"], "(R_int8 - R_random) / (R_float - R_random) of the mean returns; "
                                   "null without --model or when float and random tie"),
            "note": _f(_STR, "why something is missing or not meaningful; empty otherwise"),
        }),
        "layers": _obj("per-layer error of the int8 model vs policy.onnx", {
            "status": _f(_STR, "ok | partial (some layers lack a local figure) | unavailable",
                         enum=["ok", "partial", "unavailable"]),
            "note": _f(_STR, "what is missing and why"),
            "samples": _f(_INT, "held-out observations used (at most 1000, evenly spaced)", minimum=0),
            "interpreter": _f(_STR, "TFLite interpreter used"),
            "rounding_only_rmse_in_steps": _f(_NUM, "1/sqrt(12): the local RMSE in steps of pure rounding"),
            "layers": _arr("in graph order; see rank", _LAYER),
        }),
        "coverage": _obj("per-feature input coverage on the held-out observations", {
            "samples": _f(_INT, "held-out observations", minimum=0),
            "input_quantization": _QUANT,
            "features": _arr("one per flat observation feature (one-hots and Dict keys included)", _FEATURE),
            "flagged": _arr("names of the flagged features (clipped by more than one step)", {"type": _STR}),
            "saturated_share": _share("share of held-out observations with at least one saturated feature"),
            "image": _obj("image observations: a per-channel summary instead of per-pixel features", {
                "layout": _f(_STR, "HWC or CHW: the observation as the env returns it"),
                "shape": _arr("the env's observation shape", {"type": _INT}),
                "divisor": _f(_NUM, "the float policy sees pixel / divisor (255: SB3's normalize_images)"),
                "channels": _arr("one per channel", {"type": "object"}),
                "note": _f(_STR, "why there is no per-pixel table"),
            }),
            "discrete_inputs": _obj("one-hot (Discrete, MultiDiscrete) and MultiBinary features; only when the "
                                    "observation has some", {
                "groups": _arr("one per one-hot branch or MultiBinary part", _DISCRETE_GROUP),
                "unseen_in_calibration": _arr("features on in the held-out set but never in the calibration set",
                                              {"type": _STR}),
                "exact_levels": _f(_BOOL, "true when 0 and 1 of every such feature are exact int8 levels"),
            }),
        }, optional=("image", "discrete_inputs")),
        "thresholds": _obj("pass/fail against the thresholds", {
            "given": _obj("the thresholds the user set (null = not enforced)", _THRESHOLD_VALUES),
            "advisory": _obj("targets shown when a threshold is not set", _THRESHOLD_VALUES),
            "checks": _arr("one per threshold", _CHECK),
            "passed": _f(_BOOL, "false when an enforced check failed (the command then exits 3)"),
        }),
        "notes": _arr("things the reader should know", {"type": _STR}),
        "timings_s": {"type": "object", "description": "seconds per part of the report",
                      "additionalProperties": {"type": _NUM}},
        "versions": _obj("package versions", {
            "report": {"type": "object", "description": "of the host that made the report",
                       "additionalProperties": {"type": _STR}},
            "bundle": {"type": "object", "description": "of the host that built the bundle",
                       "additionalProperties": {"type": _STR}},
        }),
        "edgetpu": _obj("which part of the int8 model the Edge TPU runs and which the CPU (edgekit check's "
                        "prediction for the bundle's CPU int8 model); optional", {
            "fully_mappable": _f(_BOOL, "true when every op is predicted on the Edge TPU"),
            "ops_total": _f(_INT, "ops in the model", minimum=0),
            "ops_on_tpu": _f(_INT, "ops predicted on the Edge TPU", minimum=0),
            "cut_index": _f([_INT, "null"], "the op that cuts the graph: it and every later op run on the CPU"),
            "placement": _f(_STR, "which ops run where, in one line"),
            "compiled": _f(_BOOL, "true when the bundle holds an edgetpu_compiler model"),
            "ops": _arr("one per op, in execution order", _obj("one op", {
                "index": _f(_INT, "position in execution order", minimum=0),
                "op": _f(_STR, "TFLite builtin name"),
                "on_tpu": _f(_BOOL, "predicted to run on the Edge TPU"),
                "reason": _f(_STR, "why not (empty when on the Edge TPU)"),
            })),
        }),
        "build": _f("object", "the bundle's own build report (timings, Edge TPU check), kept when a report "
                    "replaces it; optional"),
    },
}


def problems(report: Any) -> list[str]:
    """Every way ``report`` departs from ``SCHEMA`` (empty when it conforms)."""
    try:
        import jsonschema
    except ImportError:
        return _check(report, SCHEMA, "$")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"$.{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(report)]


def validate(report: Any) -> None:
    """Raise BundleError when ``report`` does not follow the schema."""
    found = problems(report)
    if found:
        raise BundleError(f"the report does not follow {SCHEMA_NAME} v{SCHEMA_VERSION}: {'; '.join(found[:5])}",
                          hint="rewrite it with `edgekit report BUNDLE`")


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def _check(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """The built-in checker: the subset of JSON Schema that ``SCHEMA`` uses."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](value) for k in kinds):
            return [f"{where}: expected {' or '.join(kinds)}, got {type(value).__name__}"]
    out = []
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: must be one of {schema['enum']}")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{where}: below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{where}: above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out += [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                out += _check(item, props[key], f"{where}.{key}")
            elif extra is False:
                out.append(f"{where}: unexpected field {key!r}")
            elif isinstance(extra, dict):
                out += _check(item, extra, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += _check(item, schema["items"], f"{where}[{i}]")
    return out
