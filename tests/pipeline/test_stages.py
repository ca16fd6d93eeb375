"""Bad frames, background, vessels, segmentation and traces on known inputs."""

from __future__ import annotations

import cv2
import numpy as np

from pico_nb.pipeline import background, badframes, segment, traces, vessels


def drifting_movie(frames: int = 120, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    base = 100 + 40 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    drift = np.linspace(0, 10, frames)[:, None, None]
    movie = base[None] + drift + rng.normal(0, 3, (frames, size, size))
    return np.clip(movie, 0, 255).astype(np.uint8)


def test_black_torn_and_saturated_frames_are_found_and_replaced() -> None:
    movie = drifting_movie()
    movie[10] = 0
    movie[50, 30:] = np.roll(movie[50, 30:], 20, axis=1) // 2 + 60
    movie[90] = 255
    thumbs = badframes.thumbnails(movie)
    bad = badframes.detect(thumbs, badframes.saturation(movie))
    assert bad.tolist() == [10, 50, 90]
    assert badframes.nearest_good(len(movie), bad) == {10: 9, 50: 49, 90: 89}
    assert badframes.nearest_good(5, np.array([0, 1])) == {0: 2, 1: 2}


def test_thumbnails_are_block_means_for_any_frame_size_and_type() -> None:
    rng = np.random.default_rng(1)
    for dtype in (np.uint8, np.uint16, np.int32, np.float32):
        movie = (rng.random((3, 37, 50)) * 200).astype(dtype)
        thumbs = badframes.thumbnails(movie)
        rows, cols = np.arange(17) * 37 // 16, np.arange(17) * 50 // 16
        block = movie[2, rows[5] : rows[6], cols[9] : cols[10]]
        assert thumbs.shape == (3, 16, 16) and thumbs.dtype == np.float32
        assert thumbs[2, 5, 9] == np.float32(block.astype(np.float64).mean())
    holed = np.ones((1, 32, 32), np.float32)
    holed[0, 0, 0] = np.nan
    holed_thumbs = badframes.thumbnails(holed)
    assert np.isfinite(holed_thumbs).all()
    assert holed_thumbs[0, 0, 0] == 0.75 and holed_thumbs[0, 0, 1] == 1  # 3 of 4 pixels count
    tiny = badframes.thumbnails(np.arange(30, dtype=np.uint8).reshape(1, 5, 6))
    assert tiny.shape == (1, 16, 16) and tiny[0, 0, 0] == 0 and tiny[0, 15, 15] == 29


def test_background_removal_keeps_neurons_and_drops_the_haze() -> None:
    yy, xx = np.mgrid[0:128, 0:128]
    broad = 100 + 50 * np.exp(-((yy - 40) ** 2 + (xx - 90) ** 2) / 2000.0)
    patch = 30 * np.exp(-((yy - 90) ** 2 + (xx - 30) ** 2) / 128.0)  # out of focus, 2.5 cells
    cell = 20 * np.exp(-((yy - 64) ** 2 + (xx - 64) ** 2) / 18.0)
    clean = background.remove_background((broad + patch + cell)[None].astype(np.float32), 6, 2)[0]
    assert clean[64, 64] > 0.5 * 20
    assert abs(clean[90, 30]) < 0.25 * 30
    assert np.abs(clean[10:30, 10:30]).max() < 1


def test_vessel_mask_finds_a_dark_line_but_not_gaps_between_cells() -> None:
    image = np.full((200, 200), 100, np.float32)
    cv2.line(image, (0, 30), (199, 170), 40, 6)
    for y, x in ((150, 40), (150, 56), (40, 150), (56, 150)):
        cv2.circle(image, (x, y), 6, 140, -1)
    image = cv2.GaussianBlur(image, (0, 0), 1.5)
    mask = vessels.vessel_mask(image, 6)
    assert mask[100, 100]
    assert not mask[150, 48] and not mask[48, 150]


def neuron_movie(centres: list[tuple[int, int]], bins: int = 300, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:size, 0:size]
    movie = rng.normal(0, 1, (bins, size, size)).astype(np.float32)
    for cy, cx in centres:
        footprint = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20.0)
        events = (rng.random(bins) < 0.05) * rng.uniform(3, 6, bins)
        activity = np.convolve(events, np.exp(-np.arange(6) / 2.0))[:bins]
        movie += activity[:, None, None] * footprint[None]
    return movie


def test_segmentation_finds_two_touching_neurons() -> None:
    movie = neuron_movie([(30, 24), (30, 37)])
    z, pnr = segment.normalise(movie)
    pmap = segment.probability_map(segment.local_correlation(z), pnr, np.ones((64, 64), bool))
    params = segment.SegParams(
        gsize=6,
        min_area=20,
        avg_area=60,
        thresh_pmap=1,
        thresh_mask=0.5,
        thresh_com0=6,
        thresh_com=10,
        pixel_size=1,
        patch_size=500,
    )
    found, small = segment.segment_tile(z, pmap, np.zeros((64, 64), bool), params, (0, 0), 0)
    centres = sorted(tuple(np.round(c.centre)) for c in found)
    assert len(centres) == 2 and small == []
    assert np.hypot(*np.subtract(centres[0], (30, 24))) < 2
    assert np.hypot(*np.subtract(centres[1], (30, 37))) < 2


def test_traces_and_dff_of_a_known_signal() -> None:
    labels = np.zeros((32, 32), np.int32)
    labels[10:15, 10:15] = 1
    signal = np.ones(400, np.float32) * 50
    signal[100:110] += 25
    movie = np.full((400, 32, 32), 20, np.float32)
    movie[:, 10:15, 10:15] = signal[:, None, None]
    raw = traces.mask_matrix(labels) @ movie.reshape(400, -1).T
    ring = traces.neuropil_matrix(labels, 3) @ movie.reshape(400, -1).T
    assert np.allclose(raw[0], signal) and np.allclose(ring[0], 20)
    dff = traces.delta_f_over_f(raw, raw - 0.7 * ring, fr=10)
    assert abs(dff[0, 105] - 25 / 50) < 0.05
    assert (
        traces.longest_active_run(
            dff + np.random.default_rng(0).normal(0, 0.01, dff.shape), np.ones(400, bool)
        )[0]
        >= 8
    )


def test_half_floats_convert_through_opencv_to_numpys_very_values() -> None:
    from pico_nb.pipeline.store import converted

    rng = np.random.default_rng(3)
    single = (rng.standard_normal((7, 33, 21)) * 300).astype(np.float32)
    single[0, 0, :3] = [np.nan, np.inf, 70000.0]  # NaN, infinity and a value past float16
    half = converted(single, np.float16)
    assert half.dtype == np.float16 and half.shape == single.shape
    with np.errstate(over="ignore"):  # NumPy warns where it makes the infinity OpenCV makes
        expected = single.astype(np.float16)
    assert np.array_equal(half.view(np.uint16), expected.view(np.uint16))
    back = converted(half, np.float32)
    assert np.array_equal(back, half.astype(np.float32), equal_nan=True)
    assert converted(single, np.float32) is single  # nothing to do: no copy
    assert converted(np.arange(5, dtype=np.uint8), np.float32).tolist() == [0, 1, 2, 3, 4]
    strided = half[:, ::2]  # not contiguous
    assert np.array_equal(converted(strided, np.float32), strided.astype(np.float32), True)


def test_video_frames_are_stretched_between_their_bounds_and_clipped() -> None:
    from pico_nb.pipeline.stages.figures import scaled

    eight_bit = np.array([[0, 10, 50, 110, 255]], np.uint8)
    assert scaled(eight_bit, 10, 110).tolist() == [[0, 0, 102, 255, 255]]
    floats = np.array([[np.nan, -1.0, 0.25, 1.0, 9.0]], np.float16)
    assert scaled(floats, 0.0, 1.0).tolist() == [[0, 0, 64, 255, 255]]
