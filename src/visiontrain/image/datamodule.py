"""The LightningDataModule that turns an :class:`Inventory` into batches."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

import albumentations as A
import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from visiontrain.config.image import ImageDataSettings
from visiontrain.config.sections import Trainer
from visiontrain.core.image_decode import PixelLimit
from visiontrain.core.machine import available_cores
from visiontrain.image.image_io import TRAINING_LIMIT, read_rgb_array
from visiontrain.image.inventory import Inventory, Sample


class ImageDataset(Dataset):
    """Checked image files, decoded to RGB and passed through an albumentations pipeline.

    Decoded with the scan's own pixel limit: a file replaced during the run by a decompression bomb is refused
    from its header here too, as a DataError naming it, never decoded.
    """

    def __init__(self, samples: list[Sample], transform: A.Compose, reduce_to: int | None = None,
                 pixel_limit: PixelLimit = TRAINING_LIMIT) -> None:
        self.samples, self.transform, self.reduce_to = samples, transform, reduce_to
        self.pixel_limit = pixel_limit

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        image = read_rgb_array(sample.path, self.reduce_to, self.pixel_limit)
        return self.transform(image=image)["image"], sample.label


def seed_augmentations(worker_id: int) -> None:
    """Give each loader worker its own reproducible augmentation stream.

    albumentations' Compose keeps a private RNG that global seeds do not reach; without this every worker
    would replay the same augmentations (fixed seed) or the run would not be reproducible (no seed).
    torch derives each worker's initial seed from the seeded main process, so this is both.
    """
    info = torch.utils.data.get_worker_info()
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    if info is not None and hasattr(info.dataset.transform, "set_random_seed"):
        info.dataset.transform.set_random_seed(seed)


MAX_AUTO_WORKERS = 16


def auto_num_workers(processes: int = 1) -> int:
    """Loader workers from the cores this process may use, shared by the training processes of this node.

    Each process keeps one core for its training loop. Capped at 16: beyond that, workers cost memory (each
    holds the dataset) for little gain; ``time/data_wait_fraction`` in history.csv shows when more would help.
    """
    return max(1, min(MAX_AUTO_WORKERS, available_cores() // max(1, processes) - 1))


def processes_per_node(trainer: Trainer | Mapping[str, Any]) -> int:
    """How many training processes Lightning starts on this node for ``trainer`` (DDP: one per device); a plain
    mapping of Trainer arguments is read as the typed section would hold it."""
    if not isinstance(trainer, Trainer):
        trainer = Trainer.model_construct(**{"strategy": None, "devices": 1, "accelerator": None, **trainer})
    if "ddp" not in str(trainer.strategy or ""):
        return 1
    devices = trainer.devices
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    if hasattr(devices, "__len__") and not isinstance(devices, str):
        return max(1, len(devices))
    if str(trainer.accelerator) in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.device_count()  # devices: auto / -1
    return 1


def resolve_pin_memory(setting: bool | str, accelerator: str = "cpu") -> bool:
    """``auto`` pins host memory (faster, asynchronous copies to the GPU) exactly when training on CUDA."""
    if setting != "auto":
        return bool(setting)
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def class_weights(inventory: Inventory) -> list[float]:
    """Inverse-frequency weights, normalised so a balanced dataset gets all ones."""
    counts = Counter(sample.label for sample in inventory.splits["train"])
    total, n_classes = sum(counts.values()), len(inventory.classes)
    return [total / (n_classes * counts[i]) if counts[i] else 0.0 for i in range(n_classes)]


class ImageDataModule(pl.LightningDataModule):
    """Train/val/test loaders over a checked inventory; optional class-balanced sampling.

    ``drop_last_train``: the training loader drops its last, incomplete batch (mixup needs full, even batches).
    """

    def __init__(self, inventory: Inventory, train_transform: A.Compose, eval_transform: A.Compose,
                 batch_size: int = 32, num_workers: int | str = "auto", balance: str = "none",
                 pin_memory: bool = False, reduce_to: int | None = None, seed: int = 0, processes: int = 1,
                 drop_last_train: bool = False, prefetch_factor: int | None = None) -> None:
        super().__init__()
        self.inventory = inventory
        self.train_transform, self.eval_transform = train_transform, eval_transform
        self.batch_size, self.balance, self.pin_memory, self.seed = batch_size, balance, pin_memory, seed
        self.num_workers = auto_num_workers(processes) if num_workers == "auto" else int(num_workers)
        self.reduce_to = reduce_to
        self.drop_last_train = drop_last_train
        self.prefetch_factor = prefetch_factor  # None: PyTorch's (2 batches per worker)

    @classmethod
    def from_settings(cls, inventory: Inventory, train_transform: A.Compose, eval_transform: A.Compose,
                      data: ImageDataSettings, *, accelerator: str = "cpu", reduce_to: int | None = None,
                      seed: int = 0, processes: int = 1, drop_last_train: bool = False) -> ImageDataModule:
        """The loaders ``data`` (the typed ``data.*`` section) asks for, on ``accelerator``."""
        return cls(inventory, train_transform, eval_transform, batch_size=data.batch_size,
                   num_workers=data.num_workers, balance=data.balance,
                   pin_memory=resolve_pin_memory(data.pin_memory, accelerator), reduce_to=reduce_to, seed=seed,
                   processes=processes, drop_last_train=drop_last_train, prefetch_factor=data.prefetch_factor)

    def dataset(self, split: str, train: bool = False) -> ImageDataset:
        transform = self.train_transform if train else self.eval_transform
        if train:
            transform.set_random_seed(self.seed)  # the in-process stream; workers reseed their copies
        return ImageDataset(self.inventory.splits[split], transform, self.reduce_to, self.inventory.pixel_limit)

    def _loader(self, dataset: ImageDataset, shuffle: bool, sampler=None, drop_last: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle and sampler is None,
                          sampler=sampler, num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, drop_last=drop_last,
                          prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
                          worker_init_fn=seed_augmentations if self.num_workers > 0 else None)

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train", train=True)
        sampler = None
        if self.balance == "sampler":
            weights = class_weights(self.inventory)
            per_sample = torch.tensor([weights[s.label] for s in dataset.samples], dtype=torch.double)
            generator = torch.Generator().manual_seed(self.seed)
            sampler = WeightedRandomSampler(per_sample, num_samples=len(dataset), replacement=True,
                                            generator=generator)
        # a last batch of one image breaks BatchNorm wherever features are 1x1 (small inputs, heads): drop it
        single_last = len(dataset) % self.batch_size == 1 and len(dataset) > 1
        return self._loader(dataset, shuffle=True, sampler=sampler, drop_last=self.drop_last_train or single_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        split = "test" if "test" in self.inventory.splits else "val"
        return self._loader(self.dataset(split), shuffle=False)
