"""The built-in synthetic benchmark: layout, determinism, content and atomic writing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from simtune.data.synth import BenchmarkPaths, generate_benchmark, scene
from simtune.data.synth.measure import pixel_median, thing_region_areas
from simtune.data.synth.write import write_source_images
from simtune.errors import DataError, SimtuneError
from simtune.labels import CITYSCAPES_ID_TO_TRAIN, STUFF_IDS, THING_IDS, lookup_table

TINY: dict[str, Any] = {"num_source": 8, "num_target_train": 7, "num_target_val_per_city": 2}
TO_TRAIN = lookup_table(CITYSCAPES_ID_TO_TRAIN, 256)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny benchmark drawn in this process (workers=1)."""
    out = tmp_path_factory.mktemp("synth") / "bench"
    generate_benchmark(out, seed=3, workers=1, **TINY)
    return out


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def labels(root: Path) -> list[np.ndarray]:
    """Every label map of the benchmark, (H, W) uint8 label ids."""
    paths = sorted((root / "gta5" / "labels").glob("*.png"))
    paths += sorted((root / "cityscapes" / "gtFine").rglob("*.png"))
    return [np.asarray(Image.open(p)) for p in paths]


def test_layout_and_file_names(bench: Path) -> None:
    names = set(files(bench))
    source = {f"gta5/{d}/{i:05d}.png" for d in ("images", "labels") for i in range(1, 9)}
    per_city = {"aachen": 3, "bochum": 2, "bremen": 2, "frankfurt": 2, "lindau": 2, "munster": 2}
    target = set()
    for city, count in per_city.items():
        split = "val" if city in ("frankfurt", "lindau", "munster") else "train"
        for i in range(count):
            stem = f"{city}/{city}_000000_{i:06d}"
            target.add(f"cityscapes/leftImg8bit/{split}/{stem}_leftImg8bit.png")
            target.add(f"cityscapes/gtFine/{split}/{stem}_gtFine_labelIds.png")
    assert names == source | target | {"README.txt", "benchmark.json"}
    assert "seed 3" in (bench / "README.txt").read_text()


def test_returns_dataset_roots(bench: Path) -> None:
    paths = generate_benchmark(bench, seed=3, **TINY)
    assert paths == BenchmarkPaths(bench / "gta5", bench / "cityscapes")


def test_same_seed_is_byte_identical_for_any_worker_count(bench: Path, tmp_path: Path) -> None:
    generate_benchmark(tmp_path / "again", seed=3, workers=2, **TINY)
    assert files(tmp_path / "again") == files(bench)


def test_other_seed_gives_other_images(bench: Path, tmp_path: Path) -> None:
    generate_benchmark(tmp_path / "other", seed=4, workers=1, **TINY)
    ours, theirs = files(bench), files(tmp_path / "other")
    pngs = [name for name in ours if name.endswith(".png")]
    assert sum(ours[name] != theirs[name] for name in pngs) == len(pngs)


def test_images_and_labels_match_in_size_and_hold_valid_ids(bench: Path) -> None:
    pairs = [(bench / "gta5/images" / p.name, p, (320, 180))
             for p in (bench / "gta5/labels").glob("*.png")]
    for image in (bench / "cityscapes/leftImg8bit").rglob("*.png"):
        label = str(image).replace("leftImg8bit", "gtFine").replace(".png", "")
        pairs.append((image, Path(label + "_labelIds.png"), (256, 128)))
    valid = set(CITYSCAPES_ID_TO_TRAIN) | {0}
    for image_path, label_path, size in pairs:
        rgb, ids = Image.open(image_path), Image.open(label_path)
        assert rgb.mode == "RGB" and ids.mode in ("L", "P")
        assert rgb.size == ids.size == size
        assert set(np.unique(np.asarray(ids)).tolist()) <= valid


def test_all_stuff_and_at_least_six_thing_classes_appear(bench: Path) -> None:
    present = set(np.unique(TO_TRAIN[np.concatenate([m.ravel() for m in labels(bench)])]))
    assert set(STUFF_IDS) <= present
    assert len(present & set(THING_IDS)) >= 6


def test_an_image_holds_several_cars(bench: Path) -> None:
    car = next(k for k, v in CITYSCAPES_ID_TO_TRAIN.items() if v == 13)
    eight = np.ones((3, 3), dtype=bool)
    counts = [ndimage.label(m == car, structure=eight)[1] for m in labels(bench)]
    assert max(counts) >= 3


def test_things_change_more_than_stuff_across_domains(bench: Path) -> None:
    """Mean colour distance source -> target of thing pixels exceeds that of stuff pixels."""
    def mean_colours(images: list[Path], masks: list[np.ndarray]) -> dict[str, np.ndarray]:
        rgb = np.concatenate([np.asarray(Image.open(p)).reshape(-1, 3) for p in images])
        train = TO_TRAIN[np.concatenate([m.ravel() for m in masks])]
        groups = {"stuff": np.isin(train, STUFF_IDS), "thing": np.isin(train, THING_IDS)}
        return {name: rgb[mask].mean(0) for name, mask in groups.items()}

    maps = labels(bench)
    source = mean_colours(sorted((bench / "gta5/images").glob("*.png")), maps[:8])
    target = mean_colours(sorted((bench / "cityscapes/leftImg8bit").rglob("*.png")), maps[8:])
    shift = {k: float(np.abs(source[k] - target[k]).sum()) for k in source}
    assert shift["thing"] > shift["stuff"]


def test_things_span_several_feature_pixels_at_the_training_size(bench: Path) -> None:
    """At experiments/synthetic.yaml's sizes and stride 8, things are not specks."""
    source = sorted((bench / "gta5/labels").glob("*.png"))
    target = sorted((bench / "cityscapes/gtFine").rglob("*.png"))
    for paths, size in ((source, (160, 96)), (target, (192, 96))):
        areas = thing_region_areas(paths, size)
        assert pixel_median(areas[13]) >= 10  # car
        assert pixel_median([a for c in areas for a in areas[c]]) >= 4


def test_pixel_median_weighs_regions_by_their_pixels() -> None:
    assert pixel_median([1.0, 1.0, 1.0, 10.0]) == 10.0
    assert pixel_median([2.0, 2.0]) == 2.0
    assert np.isnan(pixel_median([]))


def test_heldout_source_images_continue_the_benchmark(bench: Path, tmp_path: Path) -> None:
    """Source image i is the same file whoever draws it; past num_source come new images."""
    write_source_images(tmp_path, seed=3, first=6, count=4)
    for i in (7, 8):
        for folder in ("images", "labels"):
            name = f"{folder}/{i:05d}.png"
            assert (tmp_path / name).read_bytes() == (bench / "gta5" / name).read_bytes()
    assert not (bench / "gta5/images/00009.png").exists()
    assert (tmp_path / "images/00009.png").read_bytes() != (tmp_path / "images/00008.png").read_bytes()


def test_existing_benchmark_is_not_regenerated(bench: Path) -> None:
    image = bench / "gta5/images/00001.png"
    before = image.stat().st_mtime_ns
    generate_benchmark(bench, seed=3, workers=1, **TINY)
    assert image.stat().st_mtime_ns == before


def test_existing_benchmark_with_other_arguments_is_refused(bench: Path) -> None:
    with pytest.raises(DataError, match="seed"):
        generate_benchmark(bench, seed=4, **TINY)


def test_folder_without_manifest_is_not_taken_for_a_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    (out / "gta5/images").mkdir(parents=True)
    with pytest.raises(DataError, match="not a complete benchmark"):
        generate_benchmark(out, **TINY)


def test_stale_partial_folder_is_ignored(tmp_path: Path) -> None:
    stale = tmp_path / ".bench.1.tmp"  # the staging folder of a killed writer
    (stale / "gta5/images").mkdir(parents=True)
    generate_benchmark(tmp_path / "bench", workers=1, **TINY)
    assert (tmp_path / "bench/benchmark.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bench.1.tmp", "bench"]


def test_interrupted_run_leaves_nothing_at_out(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = []
    real = scene.render_scene

    def dies_on_the_fifth(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        drawn.append(1)
        if len(drawn) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scene, "render_scene", dies_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        generate_benchmark(tmp_path / "bench", workers=1, **TINY)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argument", "value"), [
    ("num_source", 0), ("num_target_val_per_city", -1), ("workers", 0), ("seed", -1),
    ("target_size", (8, 8)),
])
def test_bad_arguments_name_the_value(tmp_path: Path, argument: str, value: object) -> None:
    with pytest.raises(SimtuneError, match=argument):
        generate_benchmark(tmp_path / "bench", **{argument: value})  # type: ignore[arg-type]
    assert not (tmp_path / "bench").exists()
