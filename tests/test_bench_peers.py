"""scripts/bench_peers.py's logic that runs without the peers: the derived photo sets, the figures taken from a
side's epochs, the ratios (median of per-repeat ratios, never a ratio of medians) and timm's log lines."""

from __future__ import annotations

import sys
from collections import Counter

import pytest
from PIL import Image

from conftest import PHOTOS, REPO

sys.path.insert(0, str(REPO / "scripts"))

from make_photo_sets import LOWRES_SHORT_SIDE, make_set, photos  # noqa: E402
from peerbench.report import figures, median_ratios, ratios, time_to_reach, verdict  # noqa: E402
from peerbench.sides import EpochRow, timm_steps  # noqa: E402
from peerbench.watch import Watched  # noqa: E402

SOURCE_COUNTS = Counter(p.parts[-2] for p in photos(PHOTOS))  # class -> photos (not the GIF), both splits


def test_lowres_is_a_class_tree_of_small_decodable_jpegs_and_the_same_bytes_twice(tmp_path):
    first, second = make_set("lowres", PHOTOS, tmp_path / "a", 0), make_set("lowres", PHOTOS, tmp_path / "b", 0)
    files = sorted(first.rglob("*"))
    assert Counter(p.parent.name for p in files if p.is_file()) == SOURCE_COUNTS
    for path in files:
        if path.is_file():
            with Image.open(path) as image:
                image.load()
                assert image.format == "JPEG" and image.mode == "RGB"
                assert LOWRES_SHORT_SIDE[0] <= min(image.size) <= LOWRES_SHORT_SIDE[1]
            assert path.read_bytes() == (second / path.relative_to(first)).read_bytes()


def test_rotated_keeps_the_split_and_holds_each_photo_upright_and_upside_down(tmp_path):
    root = make_set("rotated", PHOTOS, tmp_path, 0)
    for split in ("train", "val"):
        counts = Counter(p.parent.name for p in (root / split).glob("*/*"))
        source = Counter(p.parts[-2] for p in photos(PHOTOS) if p.parts[-3] == split)
        assert counts == {f"{label}_{way}": n for label, n in source.items() for way in ("upright", "upside_down")}
    photo = next((root / "train" / "ants_upright").iterdir())
    with Image.open(photo) as upright, Image.open(root / "train" / "ants_upside_down" / photo.name) as down:
        turned = down.convert("L").transpose(Image.Transpose.ROTATE_180)
        difference = sum(abs(a - b) for a, b in zip(upright.convert("L").getdata(), turned.getdata()))
        assert difference / (upright.width * upright.height) < 8  # the same picture, up to JPEG noise


def _watched(stamps: list[float]) -> Watched:
    return Watched(returncode=0, wall_s=stamps[-1] + 20, epoch_end_s=stamps, peak_tree_pss_mib=900.0,
                   peak_process_rss_mib=800.0)


def test_figures_take_the_first_best_epoch_and_compare_speed_on_whole_network_epochs():
    epochs = [EpochRow(0.90, 40.0, False, 0.2), EpochRow(0.95, 42.0, False, 0.2), EpochRow(0.95, 10.0, True, 1.0),
              EpochRow(0.93, 12.0, True, 2.0)]
    figures_ = figures("visiontrain_hymenoptera", epochs, _watched([30.0, 40.0, 70.0, 100.0]), 12)
    assert (figures_.best_epoch, figures_.best_val_acc, figures_.final_val_acc) == (1, 0.95, 0.93)
    assert figures_.wall_to_best_s == 40.0 and figures_.epoch_s == 30.0
    assert (figures_.images_per_s_all_layers, figures_.images_per_s_frozen) == (11.0, 41.0)
    assert figures_.typical_step_images_per_s == 8.0  # 12 images over the median step of 1.5 s
    with pytest.raises(ValueError):
        figures("timm", epochs, _watched([30.0]), 12)


def _side(side: str, acc: float, wall: float, speed: float):
    return figures(side, [EpochRow(acc, speed, True, 16 / speed)], _watched([wall]), 16)


def test_ratios_are_medians_of_per_repeat_ratios_and_the_goal_is_against_the_best_peer():
    ours = [_side("v", 0.95, 40, 12), _side("v", 0.95, 100, 10), _side("v", 0.96, 30, 9)]
    fast = [_side("f", 0.96, 100, 10), _side("f", 0.94, 100, 10), _side("f", 0.95, 20, 10)]
    slow = [_side("t", 0.90, 200, 5)] * 3
    per_repeat = [ratios(o, p) for o, p in zip(ours, fast)]
    assert [r["wall_to_best"] for r in per_repeat] == [0.4, 1.0, 1.5]
    medians = median_ratios(per_repeat)
    assert medians["wall_to_best"] == 1.0  # the ratio of median walls would be 40 / 100 = 0.4
    assert medians["images_per_s_all_layers"] == pytest.approx(1.0)
    assert medians["best_val_acc_difference"] == pytest.approx(0.01)
    goal = verdict(ours, {"fastai": fast, "timm": slow})
    assert goal["best_peer"] == "fastai" and goal["accuracy_met"] and not goal["wall_met"] and goal["speed_met"]


def test_the_goals_time_is_ours_to_the_peers_best_accuracy_less_001_against_its_time_to_that_best():
    ours = figures("v", [EpochRow(0.90, 10, False), EpochRow(0.94, 10, False), EpochRow(0.97, 10, True)],
                   _watched([20.0, 40.0, 90.0]), 16)
    early_low = _side("fastai", 0.95, 50, 10)  # its best, 0.95, early: ours reaches 0.94 at 40 s
    assert time_to_reach(ours, 0.94) == 40.0 and ratios(ours, early_low)["to_peer_best_accuracy"] == 0.8
    assert ratios(ours, early_low)["wall_to_best"] == 90.0 / 50.0  # our own best comes later, and higher
    out_of_reach = _side("timm", 0.99, 200, 10)
    assert ratios(ours, out_of_reach)["to_peer_best_accuracy"] is None
    assert not verdict([ours], {"timm": [out_of_reach]})["wall_met"]


def test_timm_steps_read_the_epochs_running_mean_and_the_median_step_after_the_first():
    log = ("Train: 0 [   0/15 (  7%)]  Loss: 6.19 (6.19)  Time: 7.316s,    2.19/s  (7.316s,    2.19/s)  LR: 1e-05\n"
           "Train: 0 [   1/15 ( 13%)]  Loss: 6.00 (6.10)  Time: 1.000s,   16.00/s  (4.158s,    3.85/s)  LR: 1e-05\n"
           "Train: 0 [  14/15 (100%)]  Loss: 3.51 (4.95)  Time: 0.916s,   17.46/s  (2.286s,    7.00/s)  LR: 1e-05\n"
           "Test: [   4/4]  Time: 0.193 (0.808)  Loss:   2.428 ( 5.349)  Acc@1:  62.500 ( 52.500)\n"
           "Train: 1 [  14/15 (100%)]  Loss: 3.01 (3.95)  Time: 0.900s,   17.78/s  (1.000s,   16.00/s)  LR: 1e-03\n")
    assert timm_steps(log) == {0: (7.0, True, pytest.approx(0.958)), 1: (16.0, True, 0.9)}
