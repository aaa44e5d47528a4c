"""Stages ``face-train-source`` and ``face-train`` (paper 002) on tiny images and networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.io.atomic import write_npz
from medrepro.io.errors import InputError
from medrepro.nets import load_bundle, save_bundle
from medrepro.training import face_landmarks as fl
from medrepro.training import face_source as fs
from medrepro.transforms.heatmaps import decode_heatmaps_2d, gaussian_heatmaps_2d

torch.set_num_threads(1)

SIZE = 32
K = 4
PAIRS = [[0, 1]]
TINY = {"block_counts": [1, 1, 1, 1], "width": 4}
HG = {"n_stacks": 2, "channels": 8, "depth": 3}


def _source_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    identity = np.repeat(np.arange(3), 3)
    split = np.array(["train", "train", "val"] * 3)
    images = rng.integers(0, 256, size=(len(identity), SIZE, SIZE, 3), dtype=np.uint8)
    write_npz(
        path,
        images=images,
        identity=identity.astype(np.int64),
        identity_names=np.array(["a", "b", "c"]),
        split=split,
    )
    return path


def _target(tmp: Path, n: int = 8) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8)
    landmarks = rng.uniform(6, SIZE - 7, size=(n, K, 2))
    visible = np.ones((n, K), bool)
    visible[0, 2] = False
    case_id = np.array([f"c{i}" for i in range(n)])
    dataset = tmp / "dataset.npz"
    write_npz(
        dataset,
        images=images,
        landmarks=landmarks,
        visible=visible,
        case_id=case_id,
        scale=np.ones(n),
        landmark_names=np.array(["a_r", "a_l", "m", "n"]),
        flip_pairs=np.array(PAIRS, dtype=np.int64),
    )
    # 6 train cases with budget ranks in a shuffled order, 2 test cases
    ranks = [3, 0, 5, 1, 4, 2, -1, -1]
    splits = tmp / "splits.csv"
    pd.DataFrame(
        {"case_id": case_id, "split": ["train"] * 6 + ["test"] * 2, "budget_rank": ranks}
    ).to_csv(splits, index=False)
    return dataset, splits


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("face")
    source = _source_npz(tmp / "source.npz")
    args = f"--source {source} --steps 3 --batch-size 4 --seed 0 --out-dir {tmp / 'source'}"
    assert fs.main([*args.split(), "--model-kwargs", json.dumps(TINY)]) == 0
    dataset, splits = _target(tmp)
    bundle = tmp / "source" / "model.pt"
    return {"source": source, "bundle": bundle, "dataset": dataset, "splits": splits}


@pytest.fixture(scope="module")
def data(files: dict[str, Path]) -> fl.LandmarkSet:
    return fl.load_landmark_set(files["dataset"], files["splits"], 100)


def _train(files, data, method, steps=2, **kw):
    source, meta = fl.load_source_network(files["bundle"])
    lr = kw.pop("lr", 1e-2)
    config = fl.LandmarkTrainConfig(
        method=method, budget=100, steps=steps, batch_size=4, lr=lr, deconv_channels=8, **kw
    )
    model, arch, kwargs, history = fl.train_face_landmarks(
        data, config, source, dict(meta["kwargs"]), HG
    )
    return model, source, history, config


def _initial(files, data, config):
    source, meta = fl.load_source_network(files["bundle"])
    torch.manual_seed(config.seed)
    model, _, _ = fl.build_target_model(config, K, source, dict(meta["kwargs"]), HG)
    return model


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- schedules, methods ---------------------------------------------------------------------


def test_learning_rate_schedules() -> None:
    assert fl.polynomial_lr(0, 10, 1e-3) == pytest.approx(1e-3)
    assert fl.polynomial_lr(5, 10, 1e-3) == pytest.approx(1e-3 * 0.5**0.9)
    assert fs.cosine_lr(0, 10, 1e-3) == pytest.approx(1e-3)
    assert fs.cosine_lr(5, 10, 1e-3) == pytest.approx(5e-4)


def test_method_weights_and_bad_method() -> None:
    assert fl.method_weights("ft", 2.0, 3.0) == (0.0, 0.0)
    assert fl.method_weights("ctd_cd", 2.0, 3.0) == (2.0, 0.0)
    assert fl.method_weights("ctd_ed", 2.0, 3.0) == (0.0, 3.0)
    assert fl.method_weights("ctd_com", 2.0, 3.0) == (2.0, 3.0)
    with pytest.raises(ValueError, match="unknown method"):
        fl.method_weights("ctd", 1.0, 1.0)
    with pytest.raises(ValueError, match="unknown method"):
        fl.LandmarkTrainConfig(method="kd", budget=10, steps=1, batch_size=1)
    args = "--dataset d --splits s --method kd --budget 10 --steps 1 --batch-size 1 --out-dir o"
    with pytest.raises(SystemExit):
        fl.main(args.split())


# ---- augmentation geometry ------------------------------------------------------------------


def _dot(x: float, y: float, size: int = 64, sigma: float = 1.5) -> torch.Tensor:
    r, c = np.mgrid[0:size, 0:size]
    img = np.exp(-((c - x) ** 2 + (r - y) ** 2) / (2 * sigma**2))
    return torch.from_numpy(img[None, None].astype(np.float32))


def _centroid(img: torch.Tensor) -> np.ndarray:
    a = img[0, 0].double().numpy()
    r, c = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    return np.array([(a * c).sum(), (a * r).sum()]) / a.sum()


@pytest.mark.parametrize(
    "flip,scale", [(True, 1.0), (False, 1.2), (True, 0.8), (False, 0.75), (True, 1.25)]
)
def test_augmentation_moves_a_dot_onto_the_warped_landmark_and_heatmap_peak(
    flip: bool, scale: float
) -> None:
    point = np.array([[[19.3, 40.6]]])
    warped_img = fl.warp_images(_dot(*point[0, 0]), np.array([flip]), np.array([scale]))
    warped = fl.warp_points(point, np.array([flip]), np.array([scale]), (64, 64))
    # hand-computed: centre 31.5, x' = 31.5 +- f (x - 31.5)
    sx = -1 if flip else 1
    expected = [31.5 + scale * sx * (19.3 - 31.5), 31.5 + scale * (40.6 - 31.5)]
    np.testing.assert_allclose(warped[0, 0], expected)
    np.testing.assert_allclose(_centroid(warped_img), warped[0, 0], atol=0.05)
    hm = gaussian_heatmaps_2d(warped, (16, 16), stride=4, sigma=2.0)
    peak = decode_heatmaps_2d(hm, stride=4)
    assert np.abs(peak[0, 0] - _centroid(warped_img)).max() < 0.5


def test_augment_batch_swaps_flip_pairs_and_hides_points_pushed_out() -> None:
    x = torch.zeros(2, 3, SIZE, SIZE)
    pts = np.array([[[5.0, 7.0], [20.0, 9.0], [16.0, 16.0], [1.0, 30.0]]] * 2)
    vis = np.array([[True, False, True, True]] * 2)
    _, out, v = fl.augment_batch(
        x, pts, vis, np.array([True, False]), np.array([1.0, 1.2]), np.array(PAIRS)
    )
    np.testing.assert_allclose(out[0], [[11.0, 9.0], [26.0, 7.0], [15.0, 16.0], [30.0, 30.0]])
    assert v[0].tolist() == [False, True, True, True]
    # scaled by 1.2 about 15.5: (1, 30) -> (-1.9, 32.9), outside -> invisible
    np.testing.assert_allclose(out[1, 3], [15.5 + 1.2 * (1 - 15.5), 15.5 + 1.2 * 14.5])
    assert v[1].tolist() == [True, False, True, False]


def test_flip_image_and_points_agree_pixel_for_pixel() -> None:
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 2, 1] = 1.0  # pixel (x=1, y=2)
    out = fl.warp_images(img, np.array([True]), np.array([1.0]))
    assert out[0, 0, 2, 6] == pytest.approx(1.0, abs=1e-5)  # x -> W - 1 - x = 6
    assert fl.warp_points(np.array([[[1.0, 2.0]]]), [True], [1.0], (8, 8))[0, 0].tolist() == [
        6.0,
        2.0,
    ]


def test_flip_permutation_rejects_bad_pairs() -> None:
    assert fl.flip_permutation(4, np.array([[0, 3], [1, 2]])).tolist() == [3, 2, 1, 0]
    with pytest.raises(ValueError):
        fl.flip_permutation(4, np.array([[0, 4]]))
    with pytest.raises(ValueError):
        fl.flip_permutation(4, np.array([[0, 1], [1, 2]]))


# ---- data -----------------------------------------------------------------------------------


def test_budget_selects_the_nested_subset(files: dict[str, Path]) -> None:
    b50 = fl.load_landmark_set(files["dataset"], files["splits"], 50)
    b10 = fl.load_landmark_set(files["dataset"], files["splits"], 10)
    full = fl.load_landmark_set(files["dataset"], files["splits"], 100)
    assert sorted(b50.case_id) == ["c1", "c3", "c5"]  # ranks 0, 1, 2
    assert b10.case_id == ["c1"]  # max(1, round(0.6)) = 1
    assert sorted(full.case_id) == [f"c{i}" for i in range(6)]
    with np.load(files["dataset"]) as d:
        i = b50.case_id.index("c3")
        np.testing.assert_array_equal(b50.images[i], d["images"][3])
        np.testing.assert_array_equal(b50.landmarks[i], d["landmarks"][3])


def test_bad_inputs_raise_input_error(files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    write_npz(bad, images=np.zeros((1, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(InputError, match="bad.npz"):
        fl.load_landmark_set(bad, files["splits"], 100)
    splits = tmp_path / "splits.csv"
    pd.DataFrame({"case_id": ["zz"], "split": ["train"], "budget_rank": [0]}).to_csv(splits)
    with pytest.raises(InputError, match="splits.csv"):
        fl.load_landmark_set(files["dataset"], splits, 100)
    hg = tmp_path / "hg.pt"
    save_bundle(
        hg, torch.nn.Linear(1, 1), arch="x", kwargs={}, input_shape=[1], output_kind="logits"
    )
    with pytest.raises(InputError, match="resnet_classifier"):
        fl.load_source_network(hg)
    bad_source = tmp_path / "source.npz"
    write_npz(
        bad_source,
        images=np.zeros((2, 8, 8, 3), np.uint8),
        identity=np.array([0, 5]),
        identity_names=np.array(["a"]),
        split=np.array(["train", "val"]),
    )
    with pytest.raises(InputError, match="source.npz"):
        fs.load_source_data(bad_source)


# ---- training -------------------------------------------------------------------------------


def test_target_encoder_starts_as_the_source_encoder(files, data) -> None:
    source, meta = fl.load_source_network(files["bundle"])
    config = fl.LandmarkTrainConfig(method="ft", budget=100, steps=1, batch_size=4)
    model, arch, kwargs = fl.build_target_model(config, K, source, dict(meta["kwargs"]))
    assert arch == "simple_baselines" and kwargs["width"] == 4 and kwargs["n_landmarks"] == K
    assert _same(model.encoder, source.encoder)


def test_fe_freezes_encoder_and_bn_statistics(files, data) -> None:
    model, source, _, config = _train(files, data, "fe")
    init = _initial(files, data, config)
    assert _same(model.encoder, source.encoder)  # parameters and BN buffers untouched
    assert not _same(model.decoder, init.decoder)
    d0, d1 = init.decoder.state_dict(), model.decoder.state_dict()
    assert not torch.equal(d0["deconv0.bn.running_mean"], d1["deconv0.bn.running_mean"])


def test_ftp_trains_layer4_only(files, data) -> None:
    model, source, _, _ = _train(files, data, "ftp")
    for name in ("stem", "layer1", "layer2", "layer3"):
        assert _same(getattr(model.encoder, name), getattr(source.encoder, name)), name
    assert not _same(model.encoder.layer4, source.encoder.layer4)


def test_ft_trains_the_stem_without_regulariser(files, data) -> None:
    model, source, history, _ = _train(files, data, "ft")
    assert not torch.equal(model.encoder.stem.conv.weight, source.encoder.stem.conv.weight)
    assert (history["reg_loss"] == 0).all()
    assert list(history.columns) == fl.HISTORY_COLUMNS


@pytest.mark.parametrize("method", ["ctd_cd", "ctd_ed"])
def test_ctd_regulariser_is_zero_at_start_then_positive(files, data, method) -> None:
    model, source, history, _ = _train(files, data, method, steps=3, lr=5e-2)
    reg = history["reg_loss"].to_numpy()
    assert abs(reg[0]) < 1e-5
    assert reg[-1] > 1e-6
    np.testing.assert_allclose(history["loss"], history["heatmap_loss"] + reg, rtol=1e-5)
    # the frozen source network kept its weights and BN statistics
    assert _same(source, fl.load_source_network(files["bundle"])[0])


def test_teacher_with_running_statistics_differs_at_start(files, data) -> None:
    _, _, history, _ = _train(files, data, "ctd_ed", steps=1, teacher_bn="running")
    assert history["reg_loss"].iloc[0] > 1e-4


def test_batch_statistics_keeps_running_buffers(files) -> None:
    source, _ = fl.load_source_network(files["bundle"])
    before = {k: v.clone() for k, v in source.state_dict().items()}
    x = torch.randn(4, 3, SIZE, SIZE)
    with fl.batch_statistics(source):
        a = source.features(x)
    b = source.features(x)
    assert not source.encoder.stem.bn.training and source.encoder.stem.bn.track_running_stats
    assert not torch.allclose(a, b)
    assert all(torch.equal(before[k], v) for k, v in source.state_dict().items())


def test_training_is_deterministic(files, data) -> None:
    m1, _, h1, _ = _train(files, data, "ctd_com")
    m2, _, h2, _ = _train(files, data, "ctd_com")
    assert _same(m1, m2)
    pd.testing.assert_frame_equal(h1, h2)


def test_hg_cli_writes_a_bundle_that_rebuilds(files, tmp_path: Path) -> None:
    out = tmp_path / "hg" / "25"
    args = (
        f"--dataset {files['dataset']} --splits {files['splits']} --source-bundle {files['bundle']}"
        f" --method hg --budget 25 --steps 2 --batch-size 2 --sigma 1.5 --out-dir {out}"
    )
    code = fl.main([*args.split(), "--hg-kwargs", json.dumps(HG)])
    assert code == 0
    model, meta = load_bundle(out / "model.pt")
    assert meta["arch"] == "stacked_hourglass2d" and meta["output_kind"] == "heatmaps"
    assert meta["input_shape"] == [1, 3, SIZE, SIZE]
    extra = meta["extra"]
    assert extra["heatmap_stride"] == 4 and extra["sigma"] == 1.5 and extra["budget"] == 25
    assert extra["n_train"] == 2 and extra["method"] == "hg" and extra["image_size"] == SIZE
    assert extra["landmark_names"] == ["a_r", "a_l", "m", "n"] and extra["flip_pairs"] == PAIRS
    assert model(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, K, SIZE // 4, SIZE // 4)
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == fl.HISTORY_COLUMNS and history["step"].tolist() == [0, 1]


def test_ctd_cli_bundle(files, tmp_path: Path) -> None:
    out = tmp_path / "ctd_com" / "100"
    args = (
        f"--dataset {files['dataset']} --splits {files['splits']} --source-bundle {files['bundle']}"
        f" --method ctd_com --budget 100 --steps 1 --batch-size 2 --deconv-channels 8"
        f" --out-dir {out}"
    )
    assert fl.main(args.split()) == 0
    model, meta = load_bundle(out / "model.pt")
    assert meta["arch"] == "simple_baselines" and meta["kwargs"]["deconv_channels"] == 8
    assert meta["extra"]["n_train"] == 6
    assert model(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, K, SIZE // 4, SIZE // 4)


# ---- source ---------------------------------------------------------------------------------


def test_source_outputs(files) -> None:
    out = files["bundle"].parent
    model, meta = load_bundle(out / "model.pt")
    assert meta["arch"] == "resnet_classifier" and meta["output_kind"] == "logits"
    assert meta["input_shape"] == [1, 3, SIZE, SIZE] and meta["kwargs"]["n_classes"] == 3
    assert meta["extra"]["identity_names"] == ["a", "b", "c"]
    assert meta["extra"]["image_size"] == SIZE
    assert model(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_identities"] == 3 and metrics["n_train"] == 6 and metrics["n_val"] == 3
    assert 0 <= metrics["train_accuracy"] <= 1 and 0 <= metrics["val_accuracy"] <= 1
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["step", "loss", "lr"] and len(history) == 3


def test_source_training_is_deterministic(files) -> None:
    data = fs.load_source_data(files["source"])
    config = fs.SourceTrainConfig(steps=2, batch_size=4, seed=3)
    m1, _, h1 = fs.train_source(data, TINY, config)
    m2, _, h2 = fs.train_source(data, TINY, config)
    assert _same(m1, m2)
    pd.testing.assert_frame_equal(h1, h2)


def test_source_augmentation_flip_only_mirrors() -> None:
    config = fs.SourceTrainConfig(
        steps=1, batch_size=1, flip_prob=1.0, scale_range=0, shift=0, brightness=0, contrast=0
    )
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = fs.augment_classification(x, np.random.default_rng(0), config)
    torch.testing.assert_close(out, torch.flip(x, dims=[-1]), atol=1e-4, rtol=0)


def test_source_translation_moves_a_dot() -> None:
    theta = fs._affine_theta(np.array([False]), np.array([1.0]), np.array([[3.0, -2.0]]), 64)
    grid = torch.nn.functional.affine_grid(theta, [1, 1, 64, 64], align_corners=False)
    img = _dot(20.0, 30.0)
    out = torch.nn.functional.grid_sample(img, grid, align_corners=False)
    np.testing.assert_allclose(_centroid(out), [23.0, 28.0], atol=0.02)
