"""The input statistics of one image, as the drift reference records them and serving and drift compare them."""

from __future__ import annotations

import numpy as np

from visiontrain.core.image_decode import DecodedImage

IMAGE_STATISTICS = ("width", "height", "brightness", "mean_r", "mean_g", "mean_b")


def image_statistics(decoded: DecodedImage) -> dict[str, float]:
    """Size, brightness and mean colour (0-1) of one decoded image, named as :data:`IMAGE_STATISTICS`.

    The size is the original's; the colours come from the pixels as decoded (a JPEG at reduced DCT scale
    when it is much larger than the model input), within ~0.01 of the full-size means on hymenoptera.
    """
    pixels = np.asarray(decoded.image, dtype=np.float32) / 255.0
    return {"width": float(decoded.width), "height": float(decoded.height),
            "brightness": float(pixels.mean()), "mean_r": float(pixels[..., 0].mean()),
            "mean_g": float(pixels[..., 1].mean()), "mean_b": float(pixels[..., 2].mean())}
