"""``max_image_pixels`` of predict, serve, stream and drift, read and checked the one way (a ConfigError naming it).

The limit itself, and the check of every image against it from its header, live in
:class:`visiontrain.core.image_decode.PixelLimit`; training reads ``data.max_image_pixels`` with the same rule.
"""

from __future__ import annotations

from typing import Any

from visiontrain.core.image_decode import DEFAULT_MAX_IMAGE_PIXELS, PixelLimit, pixel_limit_problem
from visiontrain.errors import ConfigError


def pixel_limit(cfg: Any, key: str = "max_image_pixels") -> PixelLimit:
    """``cfg[key]`` (default 50,000,000) as a :class:`PixelLimit`; a whole number above 0, at most Pillow's cap."""
    value = cfg.get(key)
    value = DEFAULT_MAX_IMAGE_PIXELS if value is None else value
    problem = pixel_limit_problem(value)
    if problem is not None:
        raise ConfigError(key, problem, f"{key}={DEFAULT_MAX_IMAGE_PIXELS} (decoded pixels per image)")
    return PixelLimit(int(value), key)
