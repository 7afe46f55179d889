"""Where images come in: the scan, splits, augmentation, loading, the timm model, its export, the ImageTask."""
