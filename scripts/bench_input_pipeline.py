"""Input pipeline: images per second of visiontrain's training transform against torchvision and a decode ceiling.

DataLoaders over the same image files (the hymenoptera train and val folders), each with the same workers and
batch size, the main process only receiving batches:

- visiontrain: the real training pipeline of `experiment=hymenoptera` (its datamodule: decode with PIL, DCT
  reduced decode where it applies, albumentations RandomResizedCrop + flip, uint8 tensors; the model
  normalises on its device after the copy);
- visiontrain + normalise on CPU: the same, with the normalisation done in the main process as it is when
  training on the CPU (on a GPU it runs there, after a copy four times smaller);
- visiontrain, normalising in the workers: the pipeline before the fix (albumentations Normalize in the
  workers, float32 batches);
- torchvision v2: the torchvision recipe doing the same work (EXIF orientation, RGB, RandomResizedCrop with
  the same scale range and antialiasing, flip, float tensor, normalise in the workers);
- torchvision v2, uint8: the same without ToDtype/Normalize, so it hands over what visiontrain hands over;
- decode only: PIL decode to RGB (EXIF orientation applied) and nothing else: the ceiling of any PIL pipeline.

Passes are interleaved (one pass of each pipeline in turn) after one warm-up pass each, so machine noise hits
all alike; ratios are taken per pass, then their median.

    .venv/bin/python scripts/bench_input_pipeline.py --workers 2 --passes 5 --json benchmarks/input_pipeline.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from benchlib import SHARED_DATA, compose_train, machine, markdown_table, median, timed, write_results
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset


class PathsDataset(Dataset):
    def __init__(self, paths: list[str], labels: list[int], load) -> None:
        self.paths, self.labels, self.load = paths, labels, load

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.load(self.paths[index]), self.labels[index]


def pil_rgb(path: str) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")


class TorchvisionLoad:
    def __init__(self, size: int, scale: tuple[float, float], mean, std, to_float: bool = True) -> None:
        from torchvision.transforms import v2

        tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)] if to_float else []
        self.transform = v2.Compose([v2.RandomResizedCrop(size, scale=scale, antialias=True),
                                     v2.RandomHorizontalFlip(), v2.ToImage(), *tail])

    def __call__(self, path: str) -> torch.Tensor:
        return self.transform(pil_rgb(path))


def decode_only(path: str) -> int:
    return np.asarray(pil_rgb(path)).shape[0]  # the decoded pixels are made, then dropped


def count_only(batch) -> int:
    return len(batch)


def loaders(root: Path, workers: int, batch_size: int) -> tuple[dict[str, tuple], int, dict]:
    """name -> (DataLoader, what the main process does with each batch, or None)."""
    import albumentations as A

    from visiontrain.config.checks import check_train_config
    from visiontrain.image.decided import train_steps_for
    from visiontrain.image.task import datamodule_for, input_spec_from, scan
    from visiontrain.image.transforms import build_train_transform, normalise

    cfg = compose_train("experiment=hymenoptera", f"data.root={root}", "model.pretrained=false",
                        f"data.num_workers={workers}", f"data.batch_size={batch_size}", "paths.run_dir=/tmp/unused")
    settings = check_train_config(cfg)
    spec = input_spec_from(cfg)
    inventory = scan(settings.data, settings.seed)
    inventory.splits["train"] = inventory.splits["train"] + inventory.splits["val"]  # every file, one pass
    datamodule = datamodule_for(inventory, spec, settings.data, settings.seed,
                                build_train_transform(spec, train_steps_for(cfg, spec)))
    samples = inventory.splits["train"]
    paths, labels = [s.path for s in samples], [s.label for s in samples]
    common = dict(batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0, shuffle=True)
    scale = tuple(cfg.augment.crop_scale)
    before = datamodule_for(inventory, spec, settings.data, settings.seed,
                            build_train_transform(spec, train_steps_for(cfg, spec)))
    steps = list(before.train_transform.transforms)
    before.train_transform = A.Compose(steps[:-1] + [A.Normalize(mean=spec.mean, std=spec.std), steps[-1]])

    def on_cpu(batch) -> None:
        normalise(batch[0], spec.mean, spec.std)

    def torchvision(to_float: bool) -> DataLoader:
        load = TorchvisionLoad(spec.image_size, scale, spec.mean, spec.std, to_float)
        return DataLoader(PathsDataset(paths, labels, load), **common)

    built = {
        "visiontrain": (datamodule.train_dataloader(), None),
        "visiontrain + normalise on CPU": (datamodule.train_dataloader(), on_cpu),
        "visiontrain, normalising in the workers (before)": (before.train_dataloader(), None),
        "torchvision v2": (torchvision(True), None),
        "torchvision v2, uint8": (torchvision(False), None),
        "decode only": (DataLoader(PathsDataset(paths, labels, decode_only), collate_fn=count_only, **common), None),
    }
    settings = {"images": len(samples), "image_size": spec.image_size, "crop_scale": list(scale),
                "resize_to": spec.resize_to, "batch_size": batch_size, "workers": workers}
    return built, len(samples), settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "hymenoptera")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    built, images, settings = loaders(args.data, args.workers, args.batch_size)
    seconds: dict[str, list[float]] = {name: [] for name in built}

    def one_pass(loader: DataLoader, consume) -> None:
        for batch in loader:
            if consume is not None:
                consume(batch)

    for name, (loader, consume) in built.items():  # warm-up: start workers, fill the page cache
        one_pass(loader, consume)
    for index in range(args.passes):
        for name, (loader, consume) in built.items():
            seconds[name].append(timed(lambda: one_pass(loader, consume)))
        print(f"pass {index + 1}/{args.passes}: " + ", ".join(f"{n} {images / s[-1]:.0f}"
                                                             for n, s in seconds.items()), flush=True)
    rate = {name: [images / s for s in values] for name, values in seconds.items()}
    medians = {name: median(values) for name, values in rate.items()}

    def ratio(a: str, b: str) -> float:  # per pass (same pass, same machine state), then the median
        return median([x / y for x, y in zip(rate[a], rate[b])])

    ratios = {name: {"vs_torchvision": ratio(name, "torchvision v2"), "vs_decode_only": ratio(name, "decode only")}
              for name in built}
    rows = [[name, medians[name], min(rate[name]), max(rate[name]), f"{ratios[name]['vs_torchvision']:.2f}x",
             f"{ratios[name]['vs_decode_only']:.0%}"] for name in built]
    print(f"\n{images} images, {args.workers} workers, batch {args.batch_size}, {settings['image_size']} px, "
          f"median of {args.passes} passes on {machine()['cpu']}\n")
    print(markdown_table(["pipeline", "images/s (median)", "min", "max", "x torchvision v2", "of decode only"], rows))
    vs_torchvision, vs_ceiling = ratios["visiontrain"]["vs_torchvision"], ratios["visiontrain"]["vs_decode_only"]
    print(f"\nvisiontrain / torchvision v2 = {vs_torchvision:.2f}x (goal >= 1.5x); "
          f"visiontrain / decode only = {vs_ceiling:.0%} (goal >= 70%)")
    write_results(args.json, " ".join(["python", *sys.argv]),
                  {"settings": settings, "images_per_second": rate, "median": medians, "ratios": ratios,
                   "ratio_vs_torchvision": vs_torchvision, "ratio_vs_decode_only": vs_ceiling})


if __name__ == "__main__":
    main()
