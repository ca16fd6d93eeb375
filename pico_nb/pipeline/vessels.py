"""Blood vessels: dark ridges in the mean image, where no neuron should be reported."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def vessel_mask(mean_image: np.ndarray, gsize: int) -> np.ndarray:
    """Boolean mask of dark, elongated ridges wider than about half a neuron radius.

    A multi-scale Hessian ridge filter responds to dark lines; only long connected
    structures are kept, so the dark gaps between bright neurons are not taken for vessels.
    """
    image = np.asarray(mean_image, np.float64)
    image = (image - image.mean()) / (image.std() + 1e-9)
    response = np.zeros(image.shape)
    for sigma in (0.5 * gsize, 0.8 * gsize, 1.2 * gsize):
        smooth = ndimage.gaussian_filter(image, sigma)
        dy, dx = np.gradient(smooth)
        dyy, dyx = np.gradient(dy)
        _, dxx = np.gradient(dx)
        largest = (dyy + dxx) / 2 + np.sqrt(((dyy - dxx) / 2) ** 2 + dyx**2)
        response = np.maximum(response, sigma**2 * np.clip(largest, 0, None))
    centre = np.median(response)
    spread = 1.4826 * np.median(np.abs(response - centre))
    level = max(centre + 6 * spread, 0.25 * response.max())
    mask = response > level
    labels, count = ndimage.label(mask)
    if not count:
        return mask
    index = np.arange(1, count + 1)
    sizes = ndimage.sum(mask, labels, index)
    spans = np.array(
        [max(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in ndimage.find_objects(labels)]
    )
    long_enough = (spans >= 8 * gsize) & (sizes >= 4 * gsize**2)
    return np.isin(labels, index[long_enough])
