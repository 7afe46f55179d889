"""Encoded feature arrays per split as a LightningDataModule (the features are fitted before it exists)."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


class TabularDataModule(pl.LightningDataModule):
    """Train, val and test arrays in memory; tabular batches are cheap, so no worker processes."""

    def __init__(self, splits: dict[str, tuple[np.ndarray, np.ndarray]], batch_size: int = 256,
                 seed: int = 0, shuffle_train: bool = True) -> None:
        """``shuffle_train=False``: training rows in table order, none dropped (a scikit-learn fit sees them all)."""
        super().__init__()
        self.splits = splits
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle_train = shuffle_train

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        features, target = self.splits[split]
        dataset = TensorDataset(torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(target))
        generator = torch.Generator().manual_seed(self.seed)
        # drop a last batch of one row: BatchNorm cannot normalise a single sample
        drop_last = shuffle and len(dataset) % self.batch_size == 1
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, generator=generator,
                          drop_last=drop_last)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.shuffle_train)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
