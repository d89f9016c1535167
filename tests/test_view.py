"""The sensor view: numpy, torch and ONNX give the same images, and the ink frame does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from plada_edge.core.config import FRAME, TeacherConfig
from plada_edge.core.errors import ConfigError, PayloadError
from plada_edge.core.payload import decode_payload, encode_payload
from plada_edge.core.view import IMAGENET_MEAN, IMAGENET_STD, ViewSpec, torch_view, view_numpy

SPECS = [
    ViewSpec(32, 32),
    ViewSpec(8, 32, gray=True),
    ViewSpec(8, 32, gray=True, frame="ink"),
    ViewSpec(28, 32, gray=True, frame="ink"),
    ViewSpec(32, 64, gray=True, frame="ink"),
]


def images(n=24, s=32, seed=0):
    """Noise, blanks, and small glyphs drawn light-on-dark and dark-on-light off-centre."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
    x[0], x[1] = 0, 255
    for i in range(2, n // 2):
        fg, bg = (230, 10) if i % 2 else (15, 240)
        x[i] = bg
        y0, x0 = rng.integers(0, s // 2, 2)
        x[i, y0 : y0 + s // 4, x0 : x0 + s // 5] = fg
    return x


def luma(view: np.ndarray, spec: ViewSpec) -> np.ndarray:
    """The normalised view back in [0, 1] (channel 0)."""
    return view[:, 0] * spec.std[0] + spec.mean[0]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.native_size}-{s.model_size}-{s.gray}-{s.frame}")
def test_numpy_and_torch_views_agree(spec):
    import torch

    x = images()
    want = view_numpy(x, spec)
    got = torch_view(spec, x.shape[1])(torch.from_numpy(x)).numpy()
    assert want.shape == (len(x), 3, spec.model_size, spec.model_size)
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_the_ink_frame_exports_to_onnx_with_the_same_images(tmp_path):
    import onnxruntime as ort
    import torch

    spec = ViewSpec(8, 32, gray=True, frame="ink")
    x = images(seed=1)
    path = tmp_path / "view.onnx"
    torch.onnx.export(
        torch_view(spec, 32),
        (torch.from_numpy(x[:4]),),
        str(path),
        input_names=["images"],
        output_names=["view"],
        dynamic_axes={"images": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    got = ort.InferenceSession(str(path)).run(None, {"images": x})[0]
    np.testing.assert_allclose(got, view_numpy(x, spec), atol=2e-4)


def test_the_ink_frame_centres_a_small_dark_on_light_glyph_and_fills_the_frame():
    s = 32
    glyph = np.full((1, s, s, 3), 240, np.uint8)
    glyph[0, 2:10, 3:9] = 20  # a small dark box near the top-left corner, on a light page
    spec = ViewSpec(s, s, gray=True, frame="ink")
    y = luma(view_numpy(glyph, spec), spec)[0]
    assert y[s // 2, s // 2] > 0.9  # now light, in the middle
    assert y[2, s // 2] > 0.9 and y[s // 2, 0] < 0.1  # the taller side spans the frame; the narrow one is padded dark
    assert y.min() == pytest.approx(0, abs=1e-5) and y.max() == pytest.approx(1, abs=1e-5)  # contrast stretched
    plain = luma(view_numpy(glyph, ViewSpec(s, s, gray=True)), ViewSpec(s, s, gray=True))[0]
    assert plain[s // 2, s // 2] > 0.9 and plain[5, 5] < 0.1  # without the frame: as stored


def test_the_ink_frame_leaves_a_framed_image_as_it_was_up_to_contrast():
    s = 16
    x = np.zeros((1, s, s, 3), np.uint8)
    x[0, 0, 7] = x[0, -1, 9] = x[0, 6, 0] = x[0, 10, -1] = 200  # ink touching all four sides: the box is the image
    x[0, 5:9, 5:9] = 100
    framed = ViewSpec(s, s, gray=True, frame="ink")
    plain = ViewSpec(s, s, gray=True)
    a, b = luma(view_numpy(x, framed), framed), luma(view_numpy(x, plain), plain)
    np.testing.assert_allclose(a, (b - b.min()) / (b.max() - b.min()), atol=1e-5)


def test_frames_are_checked_where_they_are_set():
    with pytest.raises(ConfigError, match="frame must be one of"):
        ViewSpec(8, 32, gray=True, frame="box")
    with pytest.raises(ConfigError, match="needs a grayscale view"):
        ViewSpec(8, 32, gray=False, frame="ink")
    with pytest.raises(ConfigError, match="frame must be auto, none or ink"):
        TeacherConfig(frame="crop")
    assert TeacherConfig().view_frame(gray=True) == FRAME["gray"]
    assert TeacherConfig().view_frame(gray=False) == FRAME["colour"]
    assert TeacherConfig(frame="none").view_frame(gray=True) == "none"
    with pytest.raises(ConfigError, match="needs a grayscale target"):
        TeacherConfig(frame="ink").view_frame(gray=False)
    # a view without a frame is written as it was before frames existed
    assert "frame" not in ViewSpec(8, 32, gray=True).to_dict()
    assert ViewSpec.from_dict(ViewSpec(8, 32, gray=True, frame="ink").to_dict()).frame == "ink"


def test_the_payload_carries_the_frame_and_refuses_a_framed_colour_view():
    idx, lab = np.arange(0, 1000, 7), np.arange(143) % 10
    base = dict(task="digits", class_names=list("0123456789"), pack_fingerprint="ab" * 32, n=1000, image_size=32)
    view = {"native_size": 8, "model_size": 32, "gray": True, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    plain = decode_payload(encode_payload(idx, lab, dict(base, view=view), "model")).header["view"]
    assert plain == view  # no frame key: what a payload from before frames reads as
    inked = decode_payload(encode_payload(idx, lab, dict(base, view=dict(view, frame="ink")), "model")).header["view"]
    assert inked == dict(view, frame="ink")
    assert ViewSpec.from_dict(inked).frame == "ink" and ViewSpec.from_dict(plain).frame == "none"
    with pytest.raises(PayloadError, match="frame"):
        encode_payload(idx, lab, dict(base, view=dict(view, gray=False, frame="ink")), "model")
    with pytest.raises(PayloadError, match="frame"):
        encode_payload(idx, lab, dict(base, view=dict(view, frame="zoom")), "model")
