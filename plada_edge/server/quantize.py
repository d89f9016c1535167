"""int8 teachers for scoring at scale (paper §3: every reference image goes through the teacher).

Scoring 14.2M images is the server's big job; on CPUs it is bound by the teacher's convolutions.
``quantize_teacher`` turns an exported fp32 teacher into onnxruntime's static QDQ int8 form,
calibrated on the target's own training images rendered as the pack stores them. Only the
network's Conv and Gemm layers are quantized: the sensor view in front of them (a colour step and
two small resize matrices) stays fp32, so the images the network sees do not change. The report
gives the logits' and energies' largest differences on calibration images; how far the 1 %
selection moves and what that does to a student is measured by benchmarks/int8.py.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.errors import ModelError


class _Images:
    """onnxruntime's CalibrationDataReader over uint8 NHWC batches (defined lazily: ORT is optional)."""

    def __init__(self, images: np.ndarray, batch: int):
        self.batches = iter([{"images": images[i : i + batch]} for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self.batches, None)


def quantize_teacher(
    fp32: str | os.PathLike, out: str | os.PathLike, calibration: np.ndarray, batch: int = 64, reduce_range: bool = True
) -> dict:
    """Write an int8 (QDQ) copy of the exported teacher ``fp32``, calibrated on uint8 NHWC ``calibration`` images.

    ``reduce_range`` (7-bit weights) is on because AVX2 CPUs without VNNI saturate the full range."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    reader_cls = type("ImagesReader", (_Images, CalibrationDataReader), {})
    if len(calibration) == 0:
        raise ModelError("int8 calibration needs images (the target's training split is empty)")
    import logging

    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(str(fp32))
    with tempfile.TemporaryDirectory() as tmp:
        prepared, tmp_out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's advice goes to the root logger
        try:
            quant_pre_process(str(fp32), str(prepared))  # shape inference and graph optimisation, as ORT recommends
            quantize_static(
                str(prepared),
                str(tmp_out),
                reader_cls(calibration, batch),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv", "Gemm"],
                per_channel=True,
                # on AVX2 CPUs without VNNI, onnxruntime's u8 x s8 kernels can saturate their 16-bit sums; the
                # full range moved more of the 1 % selection and agreed less on labels (benchmarks/int8.py)
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        except Exception as exc:  # onnxruntime raises a variety of errors for graphs it cannot quantize
            raise ModelError(f"onnxruntime could not quantize {fp32} ({type(exc).__name__}: {exc})") from None
        finally:
            logging.getLogger().setLevel(level)
        proto = onnx.load(str(tmp_out))
    del proto.metadata_props[:]
    for p in source.metadata_props:  # the same plada.* metadata: score reads an int8 teacher like any other
        e = proto.metadata_props.add()
        e.key, e.value = p.key, p.value
    e = proto.metadata_props.add()
    e.key, e.value = "plada.quantization", "int8-qdq-static"
    data = proto.SerializeToString()
    agreement = _agreement(fp32, data, calibration[: min(len(calibration), 256)])
    atomic.write_bytes(out, data)
    return {
        "onnx": str(out),
        "bytes": len(data),
        "fp32_bytes": Path(fp32).stat().st_size,
        **agreement,
        "calibration_images": len(calibration),
    }


def _agreement(fp32, int8: bytes, x: np.ndarray) -> dict:
    """How far the int8 graph's logits, energies and labels are from the fp32 graph's on images ``x``."""
    import onnxruntime as ort

    from ..core import native

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = native.hardware_threads()
    want = ort.InferenceSession(str(fp32), opts, providers=["CPUExecutionProvider"]).run(["logits"], {"images": x})[0]
    got = ort.InferenceSession(int8, opts, providers=["CPUExecutionProvider"]).run(["logits"], {"images": x})[0]
    e32 = native.energy_stats(np.ascontiguousarray(want, np.float32)).energy
    e8 = native.energy_stats(np.ascontiguousarray(got, np.float32)).energy
    return {
        "max_abs_logit_diff": float(np.abs(got - want).max()),
        "max_abs_energy_diff": float(np.abs(e8 - e32).max()),
        "argmax_agreement": float((got.argmax(1) == want.argmax(1)).mean()),
    }
