"""Frames to features: frame readers on files written here in the published formats, and featurize."""

from __future__ import annotations

import re
import shutil
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from rankfusion._validation import InputError
from rankfusion.cli import main
from rankfusion.data.featurize import IMAGENET_MEAN, IMAGENET_STD, featurize, load_backbone, scale_depth, to_input
from rankfusion.data.frames import list_frames, read_frame, read_opencv_xml


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten()).eval()


def write_opencv_xml(path, x, dt="w", name=None):
    """An OpenCV FileStorage matrix as cv::FileStorage writes it (values row by row, wrapped)."""
    name = name or path.stem
    vals = [str(int(v)) if dt in "ucwsi" else repr(float(v)) for v in x.ravel()]
    wrapped = "\n    ".join(" ".join(vals[i:i + 16]) for i in range(0, len(vals), 16))
    path.write_text(
        f'<?xml version="1.0"?>\n<opencv_storage>\n<{name} type_id="opencv-matrix">\n'
        f"  <rows>{x.shape[0]}</rows>\n  <cols>{x.shape[1]}</cols>\n  <dt>{dt}</dt>\n"
        f"  <data>\n    {wrapped}</data></{name}>\n</opencv_storage>\n")


@pytest.fixture(scope="module")
def frames_master(tmp_path_factory):
    return write_frames(tmp_path_factory.mktemp("frames") / "frames")


@pytest.fixture
def make_frames(frames_master):
    def copy(root):
        shutil.copytree(frames_master, root)
        return root
    return copy


def write_frames(root, *, seed=0):
    """rgb/<video>/img_%05d.jpg|png (8-bit), ntu_depth/<video>/MDepth-%08d.png (16-bit, 424 x 512) and
    utk_depth/<video>/depthImg<N>.xml (240 x 320)."""
    rng = np.random.default_rng(seed)
    for v, n in (("v0", 3), ("v1", 5)):
        d = root / "rgb" / v
        d.mkdir(parents=True)
        for i in range(n):
            img = Image.fromarray(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8))
            img.save(d / (f"img_{i + 1:05d}.png" if v == "v0" else f"img_{i + 1:05d}.jpg"))
        d = root / "ntu_depth" / v
        d.mkdir(parents=True)
        for i in range(n):
            depth = rng.integers(0, 4500, size=(424, 512)).astype(np.uint16)
            Image.fromarray(depth).save(d / f"MDepth-{i + 1:08d}.png")
    d = root / "utk_depth" / "s01_e01"
    d.mkdir(parents=True)
    for k in (9, 10, 188):
        write_opencv_xml(d / f"depthImg{k}.xml", rng.integers(0, 4000, size=(240, 320)))
    return root


def test_xml_reader_and_natural_order(tmp_path):
    x = np.random.default_rng(1).integers(0, 65535, size=(7, 5)).astype(np.uint16)
    for k in (10, 9, 100):
        write_opencv_xml(tmp_path / f"depthImg{k}.xml", x + k)
    assert [p.name for p in list_frames(tmp_path)] == ["depthImg9.xml", "depthImg10.xml", "depthImg100.xml"]
    got = read_opencv_xml(tmp_path / "depthImg9.xml")
    assert got.dtype == np.uint16 and got.shape == (7, 5)
    np.testing.assert_array_equal(got, x + 9)
    # OpenCV's image node (<width>/<height>/<data>, as the official code reads UTKinect's depth)
    (tmp_path / "wh.xml").write_text("<opencv_storage><depthImg1><width>3</width><height>2</height>"
                                     "<data>1 2 3\n4 5 6</data></depthImg1></opencv_storage>")
    np.testing.assert_array_equal(read_opencv_xml(tmp_path / "wh.xml"), [[1, 2, 3], [4, 5, 6]])
    (tmp_path / "img.xml").write_text(
        '<?xml version="1.0"?>\n<opencv_storage>\n<depthImg2 type_id="opencv-image">\n  <width>3</width>\n'
        "  <height>2</height>\n  <origin>bottom-left</origin>\n  <layout>interleaved</layout>\n  <dt>w</dt>\n"
        "  <data>\n    1 2 3 4 5 6</data></depthImg2>\n</opencv_storage>\n")
    got = read_opencv_xml(tmp_path / "img.xml")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, [[4, 5, 6], [1, 2, 3]])


def test_16bit_png_reads_exactly(tmp_path):
    depth = np.random.default_rng(2).integers(0, 65535, size=(424, 512)).astype(np.uint16)
    Image.fromarray(depth).save(tmp_path / "MDepth-00000001.png")
    got = read_frame(tmp_path / "MDepth-00000001.png")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, depth)


def test_to_input_scales_depth_and_replicates_channels():
    # a constant frame stays constant through the antialiased resize (weights sum to one)
    x = to_input(np.full((30, 40), 2000, dtype=np.uint16), size=16, depth_max=8000.0)
    want = (0.25 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert x.shape == (3, 16, 16)
    np.testing.assert_allclose(x.numpy(), np.broadcast_to(want[:, None, None], (3, 16, 16)), rtol=0, atol=1e-6)
    # beyond depth_max clips to 1; 8-bit grey scales by 255
    far = to_input(np.full((8, 8), 60000, dtype=np.uint16), size=8)
    np.testing.assert_allclose(far.numpy()[:, 0, 0], (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD), atol=1e-6)
    grey = to_input(np.full((8, 8), 255, dtype=np.uint8), size=8)
    np.testing.assert_allclose(grey.numpy(), far.numpy(), atol=1e-6)
    # per-frame min-max (the official preprocessing): the frame's own range maps to [0, 1]
    d = np.array([[500, 1500], [2500, 4500]], dtype=np.uint16)
    np.testing.assert_allclose(scale_depth(d, None), [[0, 0.25], [0.5, 1]], rtol=0, atol=1e-7)
    assert (scale_depth(np.full((2, 2), 7, np.uint16), None) == 0).all()


@pytest.mark.parametrize("kind", ["rgb", "ntu_depth", "utk_depth"])
def test_featurize_matches_the_backbone_frame_by_frame(tmp_path, make_frames, kind):
    frames = make_frames(tmp_path / "frames")
    model = _tiny()
    done = featurize(frames / kind, tmp_path / "out", "m", backbone=model, size=64, batch_size=8)
    assert done["channels"] == 6 and not done["skipped"]
    for vdir in sorted((frames / kind).iterdir()):
        files = list_frames(vdir)
        with torch.inference_mode():
            want = model(torch.stack([to_input(read_frame(f), size=64) for f in files])).numpy()
        got = np.load(tmp_path / "out" / "features" / "m" / f"{vdir.name}.npy")
        assert got.dtype == np.float32 and got.shape == (6, len(files))
        np.testing.assert_array_equal(got.T, want)  # the same computation, same batch
        listed = (tmp_path / "out" / "frames" / "m" / f"{vdir.name}.txt").read_text().split()
        assert listed == [f.name for f in files]


def test_featurize_stride_and_resume(tmp_path, make_frames):
    frames = make_frames(tmp_path / "frames")
    out = tmp_path / "out"
    done = featurize(frames / "rgb", out, "rgb", backbone=_tiny(), size=32, stride=2)
    # floor(T / stride) frames: 3 -> 1, 5 -> 2
    assert done["written"] == ["v0", "v1"] and done["frames"] == 1 + 2
    assert (out / "frames" / "rgb" / "v1.txt").read_text().split() == ["img_00001.jpg", "img_00003.jpg"]
    v0 = (out / "features" / "rgb" / "v0.npy").read_bytes()
    (out / "features" / "rgb" / "v1.npy").unlink()
    again = featurize(frames / "rgb", out, "rgb", backbone=_tiny(), size=32, stride=2)
    assert again["skipped"] == ["v0"] and again["written"] == ["v1"]
    assert (out / "features" / "rgb" / "v0.npy").read_bytes() == v0
    with pytest.raises(ValueError, match="stride"):
        featurize(frames / "rgb", out, "rgb", backbone=_tiny(), size=32, stride=1)


def _export_tiny(path, size):
    ep = torch.export.export(_tiny(), (torch.zeros(2, 3, size, size),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(ep, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_pt2(tmp_path_factory):
    return _export_tiny(tmp_path_factory.mktemp("bb") / "tiny.pt2", 32)


def _leftovers(root):
    return sorted(p.name for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith("."))


def _break_frames(frames, how):
    if how == "corrupt_png":
        bad = frames / "rgb" / "v1" / "img_00004.jpg"
        bad.write_bytes(b"not an image")
        return "rgb", bad.name, "v0"
    if how == "empty_video":
        (frames / "rgb" / "v2").mkdir()
        return "rgb", "v2", None
    if how == "xml_count":
        bad = frames / "utk_depth" / "s01_e01" / "depthImg10.xml"
        bad.write_text(bad.read_text().replace("<cols>320</cols>", "<cols>321</cols>"))
        return "utk_depth", "depthImg10.xml", None
    if how == "xml_syntax":
        bad = frames / "utk_depth" / "s01_e01" / "depthImg188.xml"
        bad.write_text(bad.read_text().replace("</rows>", "</row>"))
        return "utk_depth", "depthImg188.xml' line 4", None
    if how == "mixed":
        write_opencv_xml(frames / "rgb" / "v0" / "depthImg1.xml", np.zeros((2, 2)))
        return "rgb", "mixes", None
    if how == "grey_among_depth":  # an 8-bit grey frame among 16-bit depth frames: scaled differently
        Image.fromarray(np.zeros((424, 512), np.uint8)).save(frames / "ntu_depth" / "v1" / "MDepth-00000004.png")
        return "ntu_depth", "'MDepth-00000004.png' is single-channel uint8", "v0"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["corrupt_png", "empty_video", "xml_count", "xml_syntax", "mixed", "grey_among_depth"])
def test_featurize_bad_frames_one_line_nothing_half_written(tmp_path, make_frames, tiny_pt2, how):
    frames = make_frames(tmp_path / "frames")
    kind, name, finished = _break_frames(frames, how)
    out = tmp_path / "out"
    res = _run("data", "featurize", frames / kind, out, "--modality", "m", "--backbone", tiny_pt2, "--size", "32",
               "--quiet")
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith("Error:") and name in line, line
    written = sorted(p.stem for p in (out / "features" / "m").glob("*.npy")) if out.exists() else []
    # only whole videos finished before the bad one; no temporary file left behind
    assert written == ([finished] if finished else [])
    if out.exists():
        assert _leftovers(out) == []


def test_featurize_cli_options_and_refusals(tmp_path, make_frames, tiny_pt2, monkeypatch):
    frames = make_frames(tmp_path / "frames")
    res = _run("data", "featurize", frames / "ntu_depth", tmp_path / "out", "--modality", "depth",
               "--backbone", tiny_pt2, "--size", "32", "--batch-size", "2", "--quiet")
    assert res.exit_code == 0, res.output
    assert "wrote 2 videos (8 frames, 6 channels)" in res.output
    res = _run("data", "featurize", frames / "ntu_depth", tmp_path / "out", "--modality", "depth",
               "--backbone", tiny_pt2, "--size", "32", "--batch-size", "2", "--quiet")
    assert res.exit_code == 0 and "skipped 2 already written" in res.output
    res = _run("data", "featurize", frames / "ntu_depth", tmp_path / "out", "--modality", "depth",
               "--backbone", tiny_pt2, "--size", "32", "--depth-max", "minmax", "--quiet")
    assert res.exit_code == 2 and "depth_max" in res.output  # other settings than those recorded
    res = _run("data", "featurize", frames / "utk_depth", tmp_path / "out", "--modality", "utk",
               "--backbone", tiny_pt2, "--size", "32", "--depth-max", "minmax", "--quiet")
    assert res.exit_code == 0, res.output
    res = _run("data", "featurize", frames / "utk_depth", tmp_path / "o5", "--modality", "utk",
               "--backbone", tiny_pt2, "--depth-max", "far")
    assert res.exit_code == 2 and "'far'" in res.output
    # the options' own names in their refusals
    for option, value, line in (("--stride", "0", "--stride must be at least 1, got 0"),
                                ("--batch-size", "0", "--batch-size must be at least 1, got 0"),
                                ("--size", "4", "--size must be at least 8, got 4")):
        res = _run("data", "featurize", frames / "rgb", tmp_path / "o6", "--modality", "rgb", "--backbone", tiny_pt2,
                   option, value, "--quiet")
        assert res.exit_code == 2 and res.output.strip() == f"Error: {line}", res.output
    # a program exported for another input size is refused naming the video
    res = _run("data", "featurize", frames / "rgb", tmp_path / "o2", "--modality", "rgb", "--backbone", tiny_pt2,
               "--size", "48", "--quiet")
    assert res.exit_code == 2 and "video 'v0'" in res.output
    # torchvision backbones: weights are a file, never downloaded
    res = _run("data", "featurize", frames / "rgb", tmp_path / "o3", "--modality", "rgb", "--quiet")
    assert res.exit_code == 2 and "--weights" in res.output and not (tmp_path / "o3").exists()
    res = _run("data", "featurize", frames / "rgb", tmp_path / "o3", "--modality", "rgb", "--weights",
               tmp_path / "nope.pth")
    assert res.exit_code == 2 and "nope.pth" in res.output
    # without torchvision: one line naming the extra
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    res = _run("data", "featurize", frames / "rgb", tmp_path / "o4", "--modality", "rgb", "--random-weights")
    assert res.exit_code == 2 and "rankfusion[vision]" in res.output and len(res.output.strip().splitlines()) == 1


def test_featurize_failed_first_run_records_no_settings_and_the_corrected_rerun_runs(tmp_path, make_frames, tiny_pt2):
    frames = make_frames(tmp_path / "frames")
    out = tmp_path / "out"
    # a program exported for 32 x 32 fails on the first video at --size 48: nothing is made
    res = _run("data", "featurize", frames / "rgb", out, "--modality", "rgb", "--backbone", tiny_pt2, "--size", "48",
               "--quiet")
    assert res.exit_code == 2 and "video 'v0'" in res.output
    assert not (out / "featurize_rgb.json").exists() and not list(out.rglob("*.npy"))
    # so the corrected rerun is not refused as "other settings"
    res = _run("data", "featurize", frames / "rgb", out, "--modality", "rgb", "--backbone", tiny_pt2, "--size", "32",
               "--quiet")
    assert res.exit_code == 0, res.output
    assert '"size": 32' in (out / "featurize_rgb.json").read_text()
    # once features exist, other settings are refused as before
    res = _run("data", "featurize", frames / "rgb", out, "--modality", "rgb", "--backbone", tiny_pt2, "--size", "48",
               "--quiet")
    assert res.exit_code == 2 and "records features made with other settings (size)" in res.output
    # a record left without features (by an earlier version after such a failure) does not block
    (out / "featurize_rgb.json").write_text((out / "featurize_rgb.json").read_text().replace('"size": 32', '"size": 48'))
    shutil.rmtree(out / "features" / "rgb")
    res = _run("data", "featurize", frames / "rgb", out, "--modality", "rgb", "--backbone", tiny_pt2, "--size", "32",
               "--quiet")
    assert res.exit_code == 0, res.output
    assert '"size": 32' in (out / "featurize_rgb.json").read_text()


@pytest.mark.parametrize("what", ["missing", "foreign"])
def test_featurize_unloadable_program_is_one_line_on_stderr(tmp_path, make_frames, what):
    # torch.export logs the loader's traceback as a warning; the command prints only its Error line
    import subprocess

    frames = make_frames(tmp_path / "frames")
    program = tmp_path / "bb.pt2"
    if what == "foreign":
        program.write_text("not a program\n")
    res = subprocess.run([sys.executable, "-m", "rankfusion", "data", "featurize", str(frames / "rgb"),
                          str(tmp_path / "out"), "--modality", "rgb", "--backbone", str(program), "--quiet"],
                         capture_output=True, text=True)
    want = (f"Error: backbone program '{program}' does not exist" if what == "missing"
            else f"Error: cannot load backbone program '{program}': ")  # then torch's reason, which varies
    assert res.returncode == 2 and res.stdout == "" and res.stderr.startswith(want), res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.endswith("\n"), res.stderr
    assert not (tmp_path / "out").exists()


def _has_torchvision():
    try:
        import torchvision.models  # noqa: F401
    except Exception:  # absent, or built for another torch
        return False
    return True


def _bench_module():
    """benchmarks/bench_featurize.py, whose ResNet-50 builder prefers torchvision and checks the parameter count."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_featurize.py"
    spec = importlib.util.spec_from_file_location("bench_featurize", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_resnet50_architecture_through_featurize_on_two_frames(tmp_path, frames_master):
    # the real architecture (random weights) on two 16-bit depth frames of NTU's size: 2048-d per frame
    video = tmp_path / "frames" / "v1"
    video.mkdir(parents=True)
    for f in list_frames(frames_master / "ntu_depth" / "v1")[:2]:
        shutil.copy(f, video / f.name)
    torch.manual_seed(0)
    model, _ = _bench_module().resnet50_architecture()
    done = featurize(tmp_path / "frames", tmp_path / "out", "depth", backbone=model, batch_size=2)
    assert done["channels"] == 2048 and done["frames"] == 2
    x = np.load(tmp_path / "out" / "features" / "depth" / "v1.npy")
    assert x.shape == (2048, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert (x >= 0).all()  # after the last ReLU and the average pool


@pytest.mark.skipif(not _has_torchvision(), reason="torchvision (the 'vision' extra) is not importable")
def test_resnet50_architecture_on_two_frames(tmp_path):
    frames = tmp_path / "frames" / "v0"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)).save(frames / f"{i}.jpg")
    torch.manual_seed(0)
    model = load_backbone("resnet50", random_weights=True)
    weights = tmp_path / "r50.pth"
    import torchvision.models as tvm

    torch.save(tvm.resnet50(weights=None).state_dict(), weights)
    done = featurize(tmp_path / "frames", tmp_path / "out", "rgb", weights=weights, batch_size=2)
    assert done["channels"] == 2048 and done["frames"] == 2
    x = np.load(tmp_path / "out" / "features" / "rgb" / "v0.npy")
    assert x.shape == (2048, 2) and np.isfinite(x).all()
    assert sum(p.numel() for p in model.parameters()) == 23_508_032  # ResNet-50 without its 1000-way fc


ACTIONS = ["reach", "grasp", "lift", "place"]


def _write_e2e_frames(root, n_videos=6, n_frames=24):
    """rgb/<video>/img_%05d.jpg and depth/<video>/MDepth-%08d.png whose content follows the action."""
    rng = np.random.default_rng(5)
    labels = {}
    for k in range(n_videos):
        v = f"S001C001P{k + 1:03d}R001A001"
        cuts = np.sort(rng.choice(np.arange(3, n_frames - 2), size=3, replace=False))
        lab = np.searchsorted(cuts, np.arange(n_frames), side="right")
        labels[v] = [ACTIONS[(a + k) % len(ACTIONS)] for a in lab]
        for kind in ("rgb", "depth"):
            (root / kind / v).mkdir(parents=True)
        for t, name in enumerate(labels[v]):
            a = ACTIONS.index(name)
            rgb = np.clip(rng.normal(60 * a, 20, size=(30, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(rgb).save(root / "rgb" / v / f"img_{t + 1:05d}.jpg")
            depth = np.clip(rng.normal(1000 + 600 * a, 100, size=(30, 40)), 0, 8000).astype(np.uint16)
            Image.fromarray(depth).save(root / "depth" / v / f"MDepth-{t + 1:08d}.png")
    return labels


def test_frames_to_spectrum_end_to_end(tmp_path, tiny_pt2):
    import json

    labels = _write_e2e_frames(tmp_path / "frames")
    data = tmp_path / "data"
    for kind in ("rgb", "depth"):
        res = _run("data", "featurize", tmp_path / "frames" / kind, data, "--modality", kind, "--backbone", tiny_pt2,
                   "--size", "32", "--quiet")
        assert res.exit_code == 0, res.output
    # the user's part: labels per featurized frame (frames/<modality>/<video>.txt lists them) and splits
    (data / "mapping.txt").write_text("".join(f"{i} {a}\n" for i, a in enumerate(ACTIONS)))
    (data / "groundTruth").mkdir()
    (data / "splits").mkdir()
    for v, lab in labels.items():
        assert len((data / "frames" / "rgb" / f"{v}.txt").read_text().split()) == len(lab)
        (data / "groundTruth" / f"{v}.txt").write_text("".join(a + "\n" for a in lab))
    videos = sorted(labels)
    for split, vs in (("train", videos[:4]), ("val", videos[4:5]), ("test", videos[5:])):
        (data / "splits" / f"{split}.split1.bundle").write_text("".join(f"{v}.txt\n" for v in vs))
    res = _run("data", "check", data)
    assert res.exit_code == 0 and "channels  depth 6, rgb 6" in res.output, res.output
    run = tmp_path / "run"
    res = _run("train", data, "--out", run, "--epochs", "1", "--d-model", "8", "--layers", "1", "--batch-size", "4",
               "--sample-rate", "1", "--modalities", "rgb,depth", "--no-monitor", "--quiet")
    assert res.exit_code == 0, res.output
    res = _run("evaluate", run, "--split", "test", "--no-reliance")
    assert res.exit_code == 0, res.output
    assert (run / "eval_test.csv").is_file()
    res = _run("extract", run, "--out", tmp_path / "feats.npz", "--split", "test", "--obs", "0.3")
    assert res.exit_code == 0, res.output
    from rankfusion.files import load_arrays

    arrays = load_arrays(tmp_path / "feats.npz")
    assert arrays["rgb.before"].shape == (int(0.3 * 24), 8)
    res = _run("spectrum", tmp_path / "feats.npz", "--json")
    assert res.exit_code == 0, res.output
    found = {a["key"]: a for a in json.loads(res.output)["arrays"]}
    assert set(found) == {"rgb.before", "rgb.after", "depth.before", "depth.after"}
    for a in found.values():
        assert a["matrix_shape"] == [int(0.3 * 24), 8]
        assert 1 <= a["numerical_rank"] <= int(0.3 * 24) and 1.0 <= a["effective_rank"] <= a["numerical_rank"] + 1e-9


class _FeatureMap(torch.nn.Module):
    def forward(self, x):  # an unpooled trunk: (B, 4, h, w)
        return x[:, :1].repeat(1, 4, 1, 1)[:, :, ::8, ::8]


class _Pair(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3)), x.amax((2, 3))


@pytest.mark.parametrize("backbone, says", [(_FeatureMap(), "returned shape (3, 4, 4, 4) for 3 frames"),
                                            (_Pair(), "returned a tuple, not a tensor")])
def test_a_backbone_that_does_not_give_one_vector_per_frame_is_refused(tmp_path, make_frames, backbone, says):
    frames = make_frames(tmp_path / "frames")
    with pytest.raises(ValueError, match=r"video 'v0': the backbone " + re.escape(says)):
        featurize(frames / "rgb", tmp_path / "out", "rgb", backbone=backbone, size=32)
    assert not list((tmp_path / "out").rglob("*.npy"))  # nothing written


def test_feature_files_featurize_did_not_make_are_refused(tmp_path, make_frames):
    frames = make_frames(tmp_path / "frames")
    feat = tmp_path / "out" / "features" / "rgb"
    feat.mkdir(parents=True)
    np.save(feat / "vA.npy", np.zeros((16, 7), np.float32))
    with pytest.raises(ValueError, match=r"holds 1 feature file\(s\) \(e.g. 'vA.npy'\) that no featurize_rgb.json "
                                         r"records as made by featurize"):
        featurize(frames / "rgb", tmp_path / "out", "rgb", backbone=_tiny(), size=32)
    assert sorted(p.name for p in feat.iterdir()) == ["vA.npy"]


@pytest.mark.parametrize("record, says", [("{bad", "is not valid JSON"), ("[1]", "must be a JSON object, got list")])
def test_a_damaged_settings_record_is_one_line_naming_it(tmp_path, make_frames, record, says):
    frames = make_frames(tmp_path / "frames")
    featurize(frames / "rgb", tmp_path / "out", "rgb", backbone=_tiny(), size=32)
    (tmp_path / "out" / "featurize_rgb.json").write_text(record)
    with pytest.raises(ValueError, match=r"settings record '.*featurize_rgb.json' " + re.escape(says)):
        featurize(frames / "rgb", tmp_path / "out", "rgb", backbone=_tiny(), size=32)


def test_a_program_takes_neither_weights_option(tmp_path, make_frames, tiny_pt2):
    frames = make_frames(tmp_path / "frames")
    for extra, name in ((["--random-weights"], "--random-weights"), (["--weights", str(tiny_pt2)], "--weights")):
        res = _run("data", "featurize", frames / "rgb", tmp_path / "out", "--modality", "m", "--backbone", tiny_pt2,
                   *extra, "--quiet")
        assert res.exit_code == 2
        assert res.output.strip().splitlines() == [
            f"Error: {name} applies to torchvision backbones; {str(tiny_pt2)!r} holds its own weights"]


def test_xml_size_and_frame_names_with_other_digits_are_read_strictly(tmp_path):
    # '²' passed isdigit() and crashed in int()
    (tmp_path / "m.xml").write_text("<opencv_storage><m><rows>\u00b2</rows><cols>1</cols><data>1 2</data></m>"
                                    "</opencv_storage>", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_opencv_xml(tmp_path / "m.xml")
    assert str(err.value) == f"{str(tmp_path / 'm.xml')!r}: matrix size \u00b2 x 1 is not two positive integers"
    d = tmp_path / "v"
    d.mkdir()
    for name in ("f1\u00b22.png", "f10.png", "f9.png"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(d / name)
    assert [p.name for p in list_frames(d)] == ["f1\u00b22.png", "f9.png", "f10.png"]


@pytest.mark.parametrize("where", ["same", "inside"])
def test_featurize_into_the_frames_folder_reruns_skipping_the_videos_done(tmp_path, make_frames, where):
    # with OUT == FRAMES the rerun took OUT's own features/ folder for a video folder
    frames = make_frames(tmp_path / "frames") / "rgb"
    out = frames if where == "same" else frames / "out"
    done = featurize(frames, out, "rgb", backbone=_tiny(), size=32)
    assert done["written"] == ["v0", "v1"]
    (out / "features" / "rgb" / "v1.npy").unlink()
    again = featurize(frames, out, "rgb", backbone=_tiny(), size=32)
    assert again["skipped"] == ["v0"] and again["written"] == ["v1"]
    assert sorted(p.name for p in (out / "features" / "rgb").iterdir()) == ["v0.npy", "v1.npy"]


def test_weights_and_random_weights_together_are_refused(tmp_path, make_frames):
    # --random-weights beside a weights file was silently ignored (the file's weights were used)
    frames = make_frames(tmp_path / "frames")
    weights = tmp_path / "w.pth"
    torch.save({}, weights)
    res = _run("data", "featurize", frames / "rgb", tmp_path / "out", "--modality", "rgb", "--weights", weights,
               "--random-weights", "--quiet")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "Error: give --weights FILE or --random-weights, not both (random weights would not be used)"]
    assert not (tmp_path / "out").exists()


def test_a_bad_modality_name_names_the_option(tmp_path, make_frames):
    frames = make_frames(tmp_path / "frames")
    res = _run("data", "featurize", frames / "rgb", tmp_path / "out", "--modality", "r g", "--random-weights", "--quiet")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == ["Error: --modality must use letters, digits, '_' or '-', got 'r g'"]
