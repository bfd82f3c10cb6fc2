"""Synthetic pictures: one image drawn from its latent values, so that its labels can be seen in it.

Each image is drawn from its latent values (u = Phi(z) in [0, 1], so labels are noisy rater readings of
what is drawn, as with real photos) by `render_image` with numpy + PIL, at image_size x image_size:

=====================  ====================================================================
AADB target            what changes in the picture as the latent grows
=====================  ====================================================================
Light                  exposure: gamma and gain from dark/under-exposed to bright
VividColor             saturation of the whole palette, from greyish to vivid
ColorHarmony           palette hues from random (clashing) offsets to an analogous or
                       complementary scheme around a base hue
DoF                    blur of the cluttered background behind a sharp subject (none -> strong)
MotionBlur             length of a directional (linear) blur of the whole frame (upper 30 %)
Object                 subject size and its contrast against the background
RuleOfThirds           subject centre moves from the frame centre (or an edge) to a thirds point
Symmetry               right half blended into the mirrored left half (upper 30 %)
Repetition             a row / grid of identical small elements (upper 35 %: 2..16 of them)
BalacingElements       a counterweight element: on the subject's side (unbalanced) -> mirrored
                       across the centre (balanced)
Content                richness of the subject: flat blob -> rings, dots, stripes, outline
score                  not drawn directly: it follows the attributes through the latent
                       correlations (content 0.70, light 0.57, harmony 0.57 ...) plus noise
=====================  ====================================================================

EVA: visual -> exposure, saturation and harmony; composition -> thirds placement, background blur
(depth) and balance; quality -> sharpness, sensor noise and JPEG quality; semantic -> subject
richness and size; score follows them through the latent. Symmetry, repetition are random and small.

The drawing steps below consume the image's random stream in a fixed order (palette, background,
repetition, subject, motion blur, noise), so a seed gives the same picture, byte for byte.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.special import ndtr

from aesthetic_mtl.data.formats.aadb import ATTRIBUTES
from aesthetic_mtl.data.synthetic.labels import EVA_LATENT

KNOBS = ("light", "vivid", "harmony", "dof", "motion", "object", "thirds", "symmetry",
         "repetition", "balance", "content", "sharpness")


def aadb_knobs(z_row: np.ndarray) -> dict:
    """Renderer knobs of one AADB image from its latent (ATTRIBUTES order)."""

    u = dict(zip(ATTRIBUTES, ndtr(np.asarray(z_row, float))))
    return {"light": u["Light"], "vivid": u["VividColor"], "harmony": u["ColorHarmony"],
            "dof": u["DoF"], "motion": u["MotionBlur"], "object": u["Object"],
            "thirds": u["RuleOfThirds"], "symmetry": u["Symmetry"],
            "repetition": u["Repetition"], "balance": u["BalacingElements"],
            "content": u["Content"], "sharpness": 1.0}


def eva_knobs(z_row: np.ndarray, rng: np.random.Generator) -> dict:
    """Renderer knobs of one EVA image from its latent (`EVA_LATENT` order)."""
    u = dict(zip(EVA_LATENT, ndtr(np.asarray(z_row, float))))
    return {"light": u["visual"], "vivid": 0.15 + 0.85 * u["visual"] * rng.uniform(0.8, 1.0),
            "harmony": u["visual"], "dof": u["composition"], "thirds": u["composition"],
            "balance": u["composition"], "sharpness": 0.25 + 0.75 * u["quality"],
            "content": u["semantic"], "object": 0.3 + 0.7 * u["semantic"],
            "motion": 0.0, "symmetry": rng.uniform(0, 0.85), "repetition": rng.uniform(0, 0.9)}


# ---------------------------------------------------------------------------------------- drawing


def render_image(knobs: dict, rng: np.random.Generator, size: int) -> Image.Image:
    """Draw one size x size RGB picture whose look follows `knobs` (values in [0, 1], see `KNOBS`)."""
    k = {name: float(np.clip(knobs.get(name, 0.5 if name != "sharpness" else 1.0), 0, 1))
         for name in KNOBS}
    s = size
    c0, c1, accent, subj_raw = _palette(k, rng)
    img = _background(c0, c1, k, rng, s)
    draw = ImageDraw.Draw(img)
    _repetition(draw, accent, k, rng, s)
    _subject(draw, c0, c1, accent, subj_raw, k, rng, s)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = _symmetry(arr, k, s)
    arr = _motion_blur(arr, k, rng, s)
    arr = _defocus(arr, k, s)
    arr = _exposure_and_noise(arr, k, rng)
    return Image.fromarray(np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8))


def _palette(k: dict, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Two background colours, an accent and the raw subject colour.

    Harmony moves hue offsets from random (clashing) to an analogous/complementary scheme.
    """
    h0 = rng.random()
    scheme = [0.0, 0.5, 0.04, 0.54] if rng.random() < 0.5 else [0.0, 0.07, -0.07, 0.13]
    clash = rng.uniform(-0.5, 0.5, 4)
    clash[0] = 0.0
    hues = h0 + np.asarray(scheme) + (1.0 - k["harmony"]) * clash
    sat = np.clip(0.03 + 0.92 * k["vivid"] + rng.normal(0, 0.03, 4), 0, 1)
    bg_v = rng.uniform(0.4, 0.62)
    c0 = _rgb(hues[0], sat[0], bg_v)
    c1 = _rgb(hues[1], sat[1], np.clip(bg_v + rng.uniform(-0.2, 0.2), 0.15, 0.9))
    accent = _rgb(hues[3], sat[3], 0.85 if bg_v < 0.5 else 0.3)
    subj_raw = _rgb(hues[2], sat[2], 0.92 if bg_v < 0.52 else 0.18)
    return c0, c1, accent, subj_raw


def _background(c0: np.ndarray, c1: np.ndarray, k: dict, rng: np.random.Generator,
                s: int) -> Image.Image:
    """Gradient + clutter; depth of field blurs it."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    ang = rng.uniform(0, 2 * math.pi)
    t = np.clip((xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang) + 0.5, 0, 1)[..., None]
    bg = c0 * (1 - t) + c1 * t
    img = Image.fromarray(np.clip(bg * 255, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(10, 18))):
        cx, cy = rng.uniform(0, s, 2)
        r = rng.uniform(0.02, 0.09) * s
        col = (c0 if rng.random() < 0.5 else c1) * rng.uniform(0.6, 1.4)
        if rng.random() < 0.5:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_color(col))
        else:
            draw.rectangle([cx - r, cy - r * 0.6, cx + r, cy + r * 0.6], fill=_color(col))
    blur = 0.2 + 9.0 * k["dof"] ** 1.3 * s / 256
    return img.filter(ImageFilter.GaussianBlur(blur))


def _repetition(draw: ImageDraw.ImageDraw, accent: np.ndarray, k: dict, rng: np.random.Generator,
                s: int) -> None:
    """Identical small elements in a row / grid band."""
    n_rep = int(round(16 * np.clip((k["repetition"] - 0.65) / 0.35, 0, 1)))
    if n_rep < 2:
        return
    rows = 1 if n_rep <= 8 else 2
    per_row = math.ceil(n_rep / rows)
    band = 0.14 if rng.random() < 0.5 else 0.86 - 0.1 * (rows - 1)
    e = 0.035 * s
    kind = int(rng.integers(0, 3))
    for j in range(n_rep):
        cx = (j % per_row + 0.5) / per_row * s
        cy = (band + 0.1 * (j // per_row)) * s
        if kind == 0:
            draw.ellipse([cx - e, cy - e, cx + e, cy + e], fill=_color(accent))
        elif kind == 1:
            draw.rectangle([cx - e, cy - e, cx + e, cy + e], fill=_color(accent))
        else:
            draw.polygon(_polygon(cx, cy, e * 1.2, 3, -math.pi / 2, False), fill=_color(accent))


def _subject(draw: ImageDraw.ImageDraw, c0: np.ndarray, c1: np.ndarray, accent: np.ndarray,
             subj_raw: np.ndarray, k: dict, rng: np.random.Generator, s: int) -> None:
    """The subject: position (rule of thirds), size and contrast (object), detail (content), and its
    balancing element."""
    pos = _subject_position(k, rng, s)
    radius = (0.06 + 0.2 * k["object"]) * s
    bg_mean = (c0 + c1) / 2
    contrast = 0.2 + 0.8 * k["object"]
    subj = bg_mean + contrast * (subj_raw - bg_mean)
    _balancing_element(draw, pos, radius, subj, k, rng, s)
    _subject_shape(draw, pos, radius, subj, accent, bg_mean, k, rng, s)


def _subject_position(k: dict, rng: np.random.Generator, s: int) -> np.ndarray:
    """From the centre (or an edge) to a thirds point as `thirds` grows."""
    thirds = np.array([rng.choice([1 / 3, 2 / 3]), rng.choice([1 / 3, 2 / 3])])
    if rng.random() < 0.5:
        alt = np.array([0.5, 0.5]) + rng.normal(0, 0.03, 2)
    else:
        alt = np.array([rng.choice([0.12, 0.88]), rng.uniform(0.15, 0.85)])
        if rng.random() < 0.5:
            alt = alt[::-1].copy()
    return (alt + k["thirds"] * (thirds - alt) + rng.normal(0, 0.015, 2)) * s


def _balancing_element(draw: ImageDraw.ImageDraw, pos: np.ndarray, radius: float, subj: np.ndarray,
                       k: dict, rng: np.random.Generator, s: int) -> None:
    """Same side as the subject (unbalanced) -> mirrored across the centre."""
    centre = np.array([s / 2, s / 2])
    offset = pos - centre
    norm = np.linalg.norm(offset)
    direction = offset / norm if norm > 1e-3 else np.array([1.0, 0.0])
    same_side = pos + direction * 0.22 * s + rng.normal(0, 0.03 * s, 2)
    mirrored = centre - offset if norm > 0.05 * s else centre + direction * 0.3 * s
    p2 = np.clip((1 - k["balance"]) * same_side + k["balance"] * mirrored, 0.06 * s, 0.94 * s)
    r2 = radius * (0.55 + 0.15 * (1 - k["balance"]))
    draw.ellipse([p2[0] - r2, p2[1] - r2, p2[0] + r2, p2[1] + r2], fill=_color(subj * 0.9))


def _subject_shape(draw: ImageDraw.ImageDraw, pos: np.ndarray, radius: float, subj: np.ndarray,
                   accent: np.ndarray, bg_mean: np.ndarray, k: dict, rng: np.random.Generator,
                   s: int) -> None:
    """A disc, polygon or star; content adds rings, dots, stripes and an outline."""
    cx, cy = pos
    shape = int(rng.integers(0, 3))
    sides = int(rng.integers(5, 9))
    rot = rng.uniform(0, 2 * math.pi)

    def outline(r: float) -> list:
        if shape == 0:
            return [(cx + r * math.cos(2 * math.pi * i / 48), cy + r * math.sin(2 * math.pi * i / 48))
                    for i in range(48)]
        return _polygon(cx, cy, r, sides, rot, star=shape == 2)

    draw.polygon(outline(radius), fill=_color(subj))
    n_rings = int(round(6 * k["content"]))
    for i in range(n_rings):
        rr = radius * (1 - (i + 1) / (n_rings + 1.5))
        col = accent if i % 2 == 0 else subj
        draw.polygon(outline(rr), fill=_color(col))
    n_dots = int(round(24 * max(0.0, k["content"] - 0.3) / 0.7))
    for _ in range(n_dots):
        a, d = rng.uniform(0, 2 * math.pi), radius * math.sqrt(rng.random()) * 0.85
        x, y = cx + d * math.cos(a), cy + d * math.sin(a)
        e = max(1.0, 0.012 * s)
        draw.ellipse([x - e, y - e, x + e, y + e], fill=_color(1 - subj))
    if k["content"] > 0.6:
        for i in range(int(round(10 * (k["content"] - 0.6) / 0.4))):
            y = cy - radius * 0.8 + i * radius * 1.6 / 10
            draw.line([cx - radius * 0.5, y, cx + radius * 0.5, y], fill=_color(accent * 0.6), width=1)
        draw.line(outline(radius) + [outline(radius)[0]], fill=_color(1 - bg_mean), width=2)


# ------------------------------------------------------------------------------- whole-frame effects


def _symmetry(arr: np.ndarray, k: dict, s: int) -> np.ndarray:
    """Mirror the left half onto the right."""
    m = float(np.clip((k["symmetry"] - 0.7) / 0.25, 0, 1))
    if m > 0:
        half = s // 2
        right = arr[:, s - half:]
        arr = arr.copy()
        arr[:, s - half:] = (1 - m) * right + m * arr[:, :half][:, ::-1]
    return arr


def _motion_blur(arr: np.ndarray, k: dict, rng: np.random.Generator, s: int) -> np.ndarray:
    """Directional blur of the whole frame."""
    length = int(round(0.1 * s * np.clip((k["motion"] - 0.7) / 0.3, 0, 1)))
    if length >= 2:
        arr = _directional_blur(arr, length, rng.uniform(0, math.pi))
    return arr


def _defocus(arr: np.ndarray, k: dict, s: int) -> np.ndarray:
    """Technical quality (EVA): defocus blur."""
    if k["sharpness"] < 0.98:
        pil = Image.fromarray(np.clip(arr * 255, 0, 255).astype(np.uint8))
        pil = pil.filter(ImageFilter.GaussianBlur(2.5 * (1 - k["sharpness"]) * s / 256))
        arr = np.asarray(pil, dtype=np.float32) / 255.0
    return arr


def _exposure_and_noise(arr: np.ndarray, k: dict, rng: np.random.Generator) -> np.ndarray:
    """Exposure (light): a tone curve on the HSV value, pixel colours scaled along (saturation kept);
    then sensor noise, stronger for a less sharp (EVA: lower quality) picture."""
    gamma = 2.0 ** (2.4 * (0.5 - k["light"]))
    gain = 0.8 + 0.4 * k["light"]
    value = np.maximum(arr.max(axis=2, keepdims=True), 1e-4)
    arr = np.clip(arr * (np.minimum(gain * np.power(value, gamma), 1.0) / value), 0, 1)
    sigma = 0.012 + 0.07 * (1 - k["sharpness"])
    return arr + rng.normal(0, sigma, arr.shape).astype(np.float32)


# ---------------------------------------------------------------------------------------- helpers


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


def _color(c: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(np.rint(np.asarray(c) * 255), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def _polygon(cx: float, cy: float, r: float, sides: int, rot: float, star: bool) -> list:
    pts = []
    n = sides * 2 if star else sides
    for i in range(n):
        rad = r * (0.5 if star and i % 2 else 1.0)
        ang = rot + 2 * math.pi * i / n
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def _directional_blur(arr: np.ndarray, length: int, angle: float) -> np.ndarray:
    """Average of `length` copies shifted along `angle` (a linear motion-blur kernel)."""
    pad = length
    padded = np.pad(arr, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = arr.shape[:2]
    acc = np.zeros_like(arr, dtype=np.float32)
    for i in range(length):
        t = i - (length - 1) / 2
        dx, dy = int(round(t * math.cos(angle))), int(round(t * math.sin(angle)))
        acc += padded[pad + dy:pad + dy + h, pad + dx:pad + dx + w]
    return acc / length
