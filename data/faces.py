"""Procedural faces: one 178x218 RGB image and its attributes, a pure function of (seed, index).

`draw_face(seed, index)` samples a `FaceSpec` from ``np.random.default_rng([seed, index])``, draws the head with
PIL over an out-of-focus background (posed by rotating the drawing coordinates about the face centre), then
applies the lens's slight blur, gradient lighting, rounded shading of the head and weak sensor noise in numpy.
The geometry follows CelebA's aligned faces (eyes near row 111, mouth near row 152, centred on column 89), and
pose, scale and offset are bounded so that hair, ears and chin stay inside the authors' crop (rows 40:188,
columns 15:163). Fine detail that blur destroys is there on purpose, where photographs of faces have it: hair
strands, eyelashes, stubble, glasses. Backgrounds are defocused like CelebA's (stripes, checks and blotches
blurred by a Gaussian of `background_blur` px), so the finest pyramid band holds about as much of the variance
as in natural photographs (docs/faces.md, measured with `python benchmarks/face_statistics.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from data.celeba_format import ATTRIBUTE_NAMES, IMAGE_HEIGHT, IMAGE_WIDTH

Colour = tuple[int, int, int]

CENTRE = (89.0, 123.0)  # face centre of CelebA's aligned images: between the eyes (row 111) and the mouth (152)
SKIN_TONES = np.array([(255, 226, 200), (236, 196, 164), (205, 150, 112), (150, 96, 64), (92, 58, 40)], float)
HAIR_COLOURS: dict[str, Colour] = {
    "black": (28, 22, 20), "brown": (98, 62, 36), "blond": (222, 188, 118), "gray": (172, 170, 166),
    "red": (150, 62, 32),
}
HAIR_ATTRIBUTE = {"black": "Black_Hair", "brown": "Brown_Hair", "blond": "Blond_Hair", "gray": "Gray_Hair"}
IRIS_COLOURS: tuple[Colour, ...] = ((70, 45, 25), (40, 90, 140), (60, 110, 70), (110, 80, 40), (30, 25, 20))
PATTERNS = ("plain", "stripes", "checks", "noise")
MAX_ANGLE, MAX_OFFSET = 10.0, 4.0  # degrees, pixels
_ROWS, _COLS = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH].astype(np.float32)  # pixel coordinates, (H, W) each


@dataclass(frozen=True)
class FaceSpec:
    """Everything random about one face; `attributes()` maps it to CelebA's 40 labels."""

    male: bool
    young: bool
    skin: Colour
    pale: bool
    hair: str  # a HAIR_COLOURS key
    bald: bool
    long_hair: bool
    wavy: bool
    bangs: bool
    receding: bool
    face_width: float
    face_height: float
    eye_spacing: float
    narrow_eyes: bool
    iris: Colour
    bushy_brows: bool
    arched_brows: bool
    big_nose: bool
    pointy_nose: bool
    smiling: bool
    mouth_open: bool
    big_lips: bool
    lipstick: bool
    makeup: bool
    beard: bool
    goatee: bool
    mustache: bool
    stubble: bool
    sideburns: bool
    rosy: bool
    bags: bool
    eyeglasses: bool
    sunglasses: bool
    hat: bool
    earrings: bool
    necklace: bool
    necktie: bool
    blurry: bool
    angle: float  # degrees, counter-clockwise
    scale: float
    offset: tuple[float, float]
    pattern: str
    pattern_period: float  # pixels
    pattern_angle: float  # radians, for stripes
    background: tuple[Colour, Colour]
    clothes: Colour
    accessory: Colour
    light_angle: float
    light_strength: float
    brightness: float
    noise: float
    background_blur: float  # pixels (Gaussian radius of the defocused background)
    shading: float  # darkening of the head's rim relative to its centre (a lit, rounded surface)

    def attributes(self) -> dict[str, int]:
        on = {
            "5_o_Clock_Shadow": self.stubble, "Arched_Eyebrows": self.arched_brows,
            "Attractive": self.young and not self.bags and not self.blurry, "Bags_Under_Eyes": self.bags,
            "Bald": self.bald, "Bangs": self.bangs, "Big_Lips": self.big_lips, "Big_Nose": self.big_nose,
            "Blurry": self.blurry, "Bushy_Eyebrows": self.bushy_brows, "Chubby": self.face_width > 43.5,
            "Double_Chin": False, "Eyeglasses": self.eyeglasses or self.sunglasses, "Goatee": self.goatee,
            "Heavy_Makeup": self.makeup, "High_Cheekbones": self.smiling and self.face_height > 51,
            "Male": self.male, "Mouth_Slightly_Open": self.mouth_open, "Mustache": self.mustache,
            "Narrow_Eyes": self.narrow_eyes, "No_Beard": not (self.beard or self.goatee or self.mustache),
            "Oval_Face": self.face_height - self.face_width > 13, "Pale_Skin": self.pale,
            "Pointy_Nose": self.pointy_nose, "Receding_Hairline": self.receding, "Rosy_Cheeks": self.rosy,
            "Sideburns": self.sideburns, "Smiling": self.smiling,
            "Straight_Hair": not self.bald and not self.wavy, "Wavy_Hair": not self.bald and self.wavy,
            "Wearing_Earrings": self.earrings, "Wearing_Hat": self.hat, "Wearing_Lipstick": self.lipstick,
            "Wearing_Necklace": self.necklace, "Wearing_Necktie": self.necktie, "Young": self.young,
        }
        if not self.bald and self.hair in HAIR_ATTRIBUTE:
            on[HAIR_ATTRIBUTE[self.hair]] = True
        return {name: 1 if on.get(name, False) else -1 for name in ATTRIBUTE_NAMES}


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> Colour:
    return tuple(int(v) for v in rng.integers(low, high, size=3))  # type: ignore[return-value]


def sample_spec(rng: np.random.Generator) -> FaceSpec:
    male = bool(rng.random() < 0.5)
    young = bool(rng.random() < 0.75)
    tone = rng.random() * (len(SKIN_TONES) - 1)  # a point along the light-to-dark palette
    low = int(tone)
    skin = SKIN_TONES[low] + (SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[low]) * (tone - low)
    hair = str(rng.choice(list(HAIR_COLOURS), p=[0.3, 0.3, 0.18, 0.1, 0.12]))
    if not young and rng.random() < 0.6:
        hair = "gray"
    bald = male and bool(rng.random() < 0.1)
    glasses_draw = rng.random()
    sunglasses = bool(glasses_draw < 0.15)  # ~15%, as the suite's editing demos need enough of them
    beard = male and bool(rng.random() < 0.25)
    lipstick = not male and bool(rng.random() < 0.5)
    smiling = bool(rng.random() < 0.5)
    light_strength = float(rng.uniform(0.0, 0.45))
    return FaceSpec(
        male=male, young=young, skin=tuple(int(v) for v in skin), pale=bool(tone < 0.35), hair=hair, bald=bald,
        long_hair=not bald and bool(rng.random() < (0.15 if male else 0.8)), wavy=bool(rng.random() < 0.35),
        bangs=not bald and bool(rng.random() < 0.2), receding=male and not bald and bool(rng.random() < 0.15),
        face_width=float(rng.uniform(35.0, 46.0)), face_height=float(rng.uniform(46.0, 54.0)),
        eye_spacing=float(rng.uniform(17.5, 21.5)), narrow_eyes=bool(rng.random() < 0.12),
        iris=IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))], bushy_brows=bool(rng.random() < 0.15),
        arched_brows=bool(rng.random() < (0.1 if male else 0.5)), big_nose=bool(rng.random() < 0.2),
        pointy_nose=bool(rng.random() < 0.25), smiling=smiling, mouth_open=smiling and bool(rng.random() < 0.6),
        big_lips=bool(rng.random() < 0.2), lipstick=lipstick, makeup=lipstick and bool(rng.random() < 0.6),
        beard=beard, goatee=male and not beard and bool(rng.random() < 0.08),
        mustache=male and bool(rng.random() < (0.7 if beard else 0.06)),
        stubble=male and not beard and bool(rng.random() < 0.15), sideburns=male and bool(rng.random() < 0.08),
        rosy=bool(rng.random() < 0.1), bags=not young and bool(rng.random() < 0.5),
        eyeglasses=bool(0.15 <= glasses_draw < 0.3), sunglasses=sunglasses, hat=bool(rng.random() < 0.1),
        earrings=not male and bool(rng.random() < 0.35), necklace=bool(rng.random() < (0.02 if male else 0.15)),
        necktie=male and bool(rng.random() < 0.1), blurry=bool(rng.random() < 0.04),
        # Pose and scale stay small enough that hair, ears and chin remain inside the authors' crop box.
        angle=float(np.clip(rng.normal(0.0, 4.0), -MAX_ANGLE, MAX_ANGLE)), scale=float(rng.uniform(0.92, 1.04)),
        offset=tuple(np.clip(rng.normal(0.0, 2.0, 2), -MAX_OFFSET, MAX_OFFSET).tolist()),
        pattern=str(rng.choice(PATTERNS, p=[0.3, 0.3, 0.2, 0.2])), pattern_period=float(rng.uniform(8.0, 24.0)),
        pattern_angle=float(rng.uniform(0, np.pi)), background=(_colour(rng), _colour(rng)),
        clothes=_colour(rng, 20, 230), accessory=_colour(rng, 30, 250),
        light_angle=float(rng.uniform(0, 2 * np.pi)), light_strength=light_strength,
        brightness=float(rng.uniform(0.85, 1.1)), noise=float(rng.uniform(0.5, 1.5)),
        background_blur=float(rng.uniform(3.0, 7.0)), shading=float(rng.uniform(0.15, 0.35)),
    )


def _shade(colour: Colour, factor: float) -> Colour:
    return tuple(min(255, max(0, int(c * factor))) for c in colour)  # type: ignore[return-value]


def _mix(a: Colour, b: Colour, weight: float) -> Colour:
    return tuple(int(x + (y - x) * weight) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


class _Canvas:
    """Face-relative drawing onto `image`: (0, 0) is the face centre, units are pixels at scale 1.

    Pose is applied to coordinates, not pixels (rotating a layer costs more than drawing the whole face): every
    point turns by `spec.angle` about the face centre, ellipses move with their centres, and the angles of
    chords and arcs turn with them (PIL measures those clockwise, hence the minus sign).
    """

    def __init__(self, spec: FaceSpec, image: Image.Image):
        self.draw = ImageDraw.Draw(image)
        self.cx = CENTRE[0] + spec.offset[0]
        self.cy = CENTRE[1] + spec.offset[1]
        self.s = spec.scale
        self.degrees = spec.angle
        self.cos, self.sin = np.cos(np.radians(spec.angle)), np.sin(np.radians(spec.angle))

    def p(self, x: float, y: float) -> tuple[float, float]:
        x, y = self.s * x, self.s * y
        return (self.cx + x * self.cos + y * self.sin, self.cy - x * self.sin + y * self.cos)

    def box(self, x: float, y: float, rx: float, ry: float) -> tuple[float, float, float, float]:
        cx, cy = self.p(x, y)
        return (cx - self.s * rx, cy - self.s * ry, cx + self.s * rx, cy + self.s * ry)

    def width(self, width: float) -> int:
        return max(1, round(width * self.s))

    def ellipse(self, x, y, rx, ry, fill=None, outline=None, width=1.0) -> None:
        self.draw.ellipse(self.box(x, y, rx, ry), fill=fill, outline=outline, width=self.width(width))

    def line(self, points, fill, width=1.0) -> None:
        self.draw.line([self.p(x, y) for x, y in points], fill=fill, width=self.width(width))

    def polygon(self, points, fill) -> None:
        self.draw.polygon([self.p(x, y) for x, y in points], fill=fill)

    def rectangle(self, left, top, right, bottom, fill) -> None:
        self.polygon([(left, top), (right, top), (right, bottom), (left, bottom)], fill)

    def chord(self, x, y, rx, ry, start, end, fill) -> None:
        self.draw.chord(self.box(x, y, rx, ry), start - self.degrees, end - self.degrees, fill=fill)

    def arc(self, x, y, rx, ry, start, end, fill, width=1.0) -> None:
        self.draw.arc(self.box(x, y, rx, ry), start - self.degrees, end - self.degrees, fill=fill,
                      width=self.width(width))


def _strand_colours(rng: np.random.Generator, hair: Colour, count: int) -> list[Colour]:
    """Hair strands a little darker or lighter than the hair, so that single strands show."""
    return [_shade(hair, factor) for factor in rng.uniform(0.6, 1.45, count).tolist()]


def _draw_back_hair(c: _Canvas, spec: FaceSpec, rng: np.random.Generator, hair: Colour) -> None:
    half, top, bottom = spec.face_width + 14, -spec.face_height - 8, spec.face_height + 50
    c.chord(0, top + 30, half, 30, 180, 360, hair)  # a rounded top, then straight down to the shoulders
    c.rectangle(-half, top + 30, half, bottom, hair)
    count, amplitude = 70, (3.0 if spec.wavy else 0.6)
    xs, phases = rng.uniform(-half + 2, half - 2, count), rng.uniform(0, 2 * np.pi, count)
    starts, ends = rng.uniform(top + 10, 0, count), bottom - rng.uniform(0, 12, count)
    steps = np.linspace(0.0, 1.0, 7)
    for x, phase, start, end, colour in zip(xs, phases, starts, ends, _strand_colours(rng, hair, count),
                                            strict=True):  # long strands, straight or wavy
        ys = start + (end - start) * steps
        c.line(list(zip((x + amplitude * np.sin(phase + ys / 9)).tolist(), ys.tolist(), strict=True)), colour)


def _draw_hair_cap(c: _Canvas, spec: FaceSpec, rng: np.random.Generator, hair: Colour) -> None:
    rx, ry = spec.face_width + 6, spec.face_height + (6 if spec.receding else 12)
    c.chord(0, -5, rx, ry, 180, 360, hair)
    count, crown_y = 90, -5 - ry + 6
    angles = rng.uniform(np.pi * 1.02, np.pi * 1.98, count)
    end_x, end_y = rx * np.cos(angles) * 0.96, -5 + ry * np.sin(angles) * 0.2
    start_x, start_y = rng.normal(0, 6, count), crown_y + rng.uniform(0, 4, count)
    mid_x, mid_y = (start_x + end_x) / 2 + rng.normal(0, 2.5, count), (start_y + end_y) / 2
    strands = np.stack([start_x, start_y, mid_x, mid_y, end_x, end_y], axis=1).tolist()
    for (x0, y0, x1, y1, x2, y2), colour in zip(strands, _strand_colours(rng, hair, count), strict=True):
        c.line([(x0, y0), (x1, y1), (x2, y2)], colour)  # crown to rim; the face covers their lower ends


def _draw_bangs(c: _Canvas, spec: FaceSpec, rng: np.random.Generator, hair: Colour) -> None:
    fw, top = spec.face_width, -spec.face_height + 2
    edge = [(x, -30 + rng.uniform(-3, 3) + 0.002 * x * x) for x in np.linspace(fw * 0.95, -fw * 0.95, 15)]
    c.polygon([(-fw * 0.9, top), (fw * 0.9, top), *edge], hair)
    count = 45
    xs, drift, ends = rng.uniform(-fw * 0.85, fw * 0.85, count), rng.normal(0, 2, count), rng.uniform(-4, 2, count)
    for x, dx, end, colour in zip(xs.tolist(), drift.tolist(), ends.tolist(), _strand_colours(rng, hair, count),
                                  strict=True):
        c.line([(x, top + 2), (x + dx, -30 + end)], colour)


def _draw_eye(c: _Canvas, spec: FaceSpec, x: float, y: float, side: int) -> None:
    ry = 2.8 if spec.narrow_eyes or spec.smiling else 4.3
    if spec.makeup:
        c.ellipse(x, y - 2, 9.5, ry + 3, fill=_mix(spec.skin, spec.accessory, 0.45))
    if spec.bags:
        c.arc(x, y + 3, 8, 4, 20, 160, _shade(spec.skin, 0.75), 1.2)
    c.ellipse(x, y, 8, ry, fill=(245, 245, 240))
    c.ellipse(x, y, 3.6, min(3.6, ry), fill=spec.iris)
    c.ellipse(x, y, 1.6, 1.6, fill=(10, 10, 10))
    c.ellipse(x + 1.2, y - 1.2, 0.6, 0.6, fill=(255, 255, 255))
    c.arc(x, y, 8.5, ry + 0.5, 190, 350, (25, 20, 20), 1.4)
    for t in np.linspace(-6, 6, 6):  # eyelashes
        c.line([(x + t, y - ry * np.sqrt(max(0.0, 1 - (t / 8.5) ** 2))), (x + t * 1.3 + side * 0.8, y - ry - 2.5)],
               (20, 15, 15), 0.8)


def _draw_brow(c: _Canvas, spec: FaceSpec, x: float, y: float, side: int, hair: Colour) -> None:
    thickness = 4.5 if spec.bushy_brows else 2.5
    lift = 4.0 if spec.arched_brows else 1.5
    inner, outer = x - side * 8, x + side * 9
    top = [(inner, y), (x, y - lift), (outer, y + 1)]
    bottom = [(outer, y + 1 + thickness * 0.4), (x, y - lift + thickness), (inner, y + thickness)]
    colour = _shade(hair, 0.7) if hair != HAIR_COLOURS["blond"] else _shade(hair, 0.55)
    c.polygon(top + bottom, colour)


def _draw_mouth(c: _Canvas, spec: FaceSpec) -> None:
    lips = spec.accessory if spec.lipstick else _mix(spec.skin, (170, 60, 60), 0.45)
    if spec.lipstick:
        lips = _mix(lips, (200, 20, 40), 0.6)
    width, fullness = (15.0 if spec.smiling else 12.0), (1.4 if spec.big_lips else 1.0)
    if spec.smiling:
        c.chord(0, 27, width, 9 * fullness, 0, 180, lips)
        if spec.mouth_open:
            c.chord(0, 28, width - 3, 6.5 * fullness, 0, 180, (60, 15, 20))
            c.chord(0, 27, width - 3.5, 3.0, 0, 180, (240, 238, 230))  # upper teeth
        else:
            c.arc(0, 26, width - 1, 5, 10, 170, (90, 25, 30), 1.5)
    else:
        c.ellipse(0, 30, width, 3.2 * fullness, fill=lips)
        c.line([(-width + 1, 30), (0, 30.5), (width - 1, 30)], (90, 30, 35), 1.2)


def _draw_facial_hair(c: _Canvas, spec: FaceSpec, rng: np.random.Generator, hair: Colour) -> None:
    fw, fh = spec.face_width, spec.face_height
    beard = _shade(hair, 0.85)
    if spec.beard:
        c.chord(0, 5, fw, fh, 15, 165, beard)
        c.chord(0, 22, fw * 0.55, 16, 0, 360, beard)
    if spec.goatee:
        c.ellipse(0, 43, 9, 10, fill=beard)
    if spec.mustache:
        c.polygon([(-15, 25), (-4, 20), (0, 21), (4, 20), (15, 25), (0, 23.5)], beard)
    if spec.sideburns:
        for side in (-1, 1):
            c.polygon([(side * fw, -8), (side * (fw - 6), -8), (side * (fw - 5), 14), (side * fw, 10)], beard)
    if spec.stubble or spec.beard:
        count = 220  # stubble dots: single pixels that blur erases
        angles, radii = rng.uniform(0.15 * np.pi, 0.85 * np.pi, count), rng.uniform(0.55, 0.98, count)
        xs, ys = (fw * radii * np.cos(angles)).tolist(), (5 + fh * radii * np.sin(angles)).tolist()
        for x, y, factor in zip(xs, ys, rng.uniform(0.5, 0.9, count).tolist(), strict=True):
            c.draw.point(c.p(x, y), fill=_shade(beard, factor))


def _draw_glasses(c: _Canvas, spec: FaceSpec, eye_y: float) -> None:
    d = spec.eye_spacing
    frame = (15, 15, 15) if spec.sunglasses else _shade(spec.accessory, 0.5)
    for side in (-1, 1):
        if spec.sunglasses:
            c.ellipse(side * d, eye_y + 1, 12, 9, fill=_shade(spec.accessory, 0.15), outline=frame, width=1.5)
            c.line([(side * d - 6, eye_y - 3), (side * d - 2, eye_y - 6)], (200, 200, 210), 1)  # glint
        else:
            c.ellipse(side * d, eye_y + 1, 12, 9, outline=frame, width=1.6)
        c.line([(side * (d + 12), eye_y - 1), (side * (spec.face_width + 1), eye_y - 3)], frame, 1.6)
    c.arc(0, eye_y + 1, d - 12, 4, 200, 340, frame, 1.6)


def _draw_hat(c: _Canvas, spec: FaceSpec) -> None:
    fw, top = spec.face_width, -spec.face_height - 22
    c.chord(0, top + 14, fw + 2, 14, 180, 360, spec.accessory)
    c.rectangle(-fw - 2, top + 14, fw + 2, -spec.face_height + 12, spec.accessory)
    c.rectangle(-fw - 2, -spec.face_height + 4, fw + 2, -spec.face_height + 9, _shade(spec.accessory, 0.55))
    c.ellipse(0, -spec.face_height + 12, fw + 18, 5, fill=_shade(spec.accessory, 0.8))


def draw_head(spec: FaceSpec, rng: np.random.Generator, image: Image.Image) -> None:
    """Draw the head, neck and shoulders of `spec` onto `image` (RGB, 178x218), posed."""
    c = _Canvas(spec, image)
    fw, fh = spec.face_width, spec.face_height
    hair = HAIR_COLOURS[spec.hair]
    skin, shadow = spec.skin, _shade(spec.skin, 0.82)
    if spec.long_hair:
        _draw_back_hair(c, spec, rng, hair)
    c.ellipse(0, 95, 62, 32, fill=spec.clothes)  # shoulders
    c.rectangle(-15, 25, 15, 80, shadow)  # neck
    if spec.necktie:
        c.polygon([(-5, 66), (5, 66), (7, 100), (0, 110), (-7, 100)], spec.accessory)
    if spec.necklace:
        for t in np.linspace(0.15 * np.pi, 0.85 * np.pi, 14):
            c.ellipse(15 * np.cos(t), 58 + 12 * np.sin(t), 1.4, 1.4, fill=(235, 220, 150))
    for side in (-1, 1):  # ears
        c.ellipse(side * fw, -4, 6, 11, fill=shadow)
        c.ellipse(side * (fw + 1), -4, 2.5, 6, fill=_shade(skin, 0.68))
        if spec.earrings:
            c.ellipse(side * fw, 9, 2.2, 2.2, fill=(240, 205, 90))
    if not spec.bald:
        _draw_hair_cap(c, spec, rng, hair)
    c.ellipse(0, 5, fw, fh, fill=skin)
    if spec.bald:  # a skin-coloured cranium, slightly shaded
        c.chord(0, 0, fw * 0.98, fh + 6, 180, 360, skin)
        c.arc(0, 0, fw * 0.7, fh * 0.75, 220, 320, _shade(skin, 1.08), 2)
    c.ellipse(0, 5, fw, fh, outline=_shade(skin, 0.75), width=1)
    if spec.rosy or spec.makeup:
        for side in (-1, 1):
            c.ellipse(side * fw * 0.55, 12, 8, 5, fill=_mix(skin, (230, 90, 100), 0.35))
    _draw_facial_hair(c, spec, rng, hair)
    if spec.bangs:
        _draw_bangs(c, spec, rng, hair)
    eye_y = -12.0
    for side in (-1, 1):
        _draw_eye(c, spec, side * spec.eye_spacing, eye_y, side)
        _draw_brow(c, spec, side * spec.eye_spacing, eye_y - 10, side, hair)
    nose_width = 7.0 if spec.big_nose else 5.0
    c.line([(-2, -6), (-3, 8), (-nose_width + 1, 12)], _shade(skin, 0.72), 1.3)
    if spec.pointy_nose:
        c.polygon([(-2, 10), (0, 15), (2, 10)], _shade(skin, 1.06))
    for side in (-1, 1):
        c.ellipse(side * (nose_width - 2.5), 14, 1.8, 1.2, fill=_shade(skin, 0.45))
    _draw_mouth(c, spec)
    if spec.eyeglasses or spec.sunglasses:
        _draw_glasses(c, spec, eye_y)
    if spec.hat:
        _draw_hat(c, spec)


def draw_background(spec: FaceSpec, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 background in focus: plain, stripes, checks or blotches between two colours."""
    first, second = (np.asarray(colour, np.float32) for colour in spec.background)
    rows, cols = _ROWS, _COLS
    period = spec.pattern_period
    if spec.pattern == "stripes":
        theta = spec.pattern_angle
        weight = ((cols * np.cos(theta) + rows * np.sin(theta)) / period) % 1.0 < 0.5
    elif spec.pattern == "checks":
        weight = ((rows // round(period) + cols // round(period)) % 2).astype(bool)
    elif spec.pattern == "noise":  # blotches: coarse random values, smoothly interpolated (foliage, crowds)
        cells = max(2, round(period))
        coarse = rng.random((IMAGE_HEIGHT // cells + 2, IMAGE_WIDTH // cells + 2), dtype=np.float32)
        blotches = Image.fromarray(coarse).resize((coarse.shape[1] * cells, coarse.shape[0] * cells),
                                                 Image.Resampling.BILINEAR)
        weight = np.asarray(blotches)[:IMAGE_HEIGHT, :IMAGE_WIDTH]
    else:
        weight = rows / IMAGE_HEIGHT  # a plain vertical gradient
    weight = np.asarray(weight, np.float32)[..., None]  # (H, W, 1)
    background = weight * (second - first)  # (H, W, 3)
    background += first
    return background


def render(spec: FaceSpec, rng: np.random.Generator) -> np.ndarray:
    """(218, 178, 3) uint8 RGB image of `spec`."""
    canvas = Image.fromarray(draw_background(spec, rng).astype(np.uint8))
    canvas = canvas.filter(ImageFilter.GaussianBlur(spec.background_blur))  # the camera focuses on the face
    draw_head(spec, rng, canvas)
    # A lens and sensor are never pixel-sharp; blurry faces get a stronger blur.
    canvas = canvas.filter(ImageFilter.GaussianBlur(1.6 if spec.blurry else 0.6))
    image = np.asarray(canvas, dtype=np.float32)
    along = ((_COLS - CENTRE[0]) * np.cos(spec.light_angle) + (_ROWS - CENTRE[1]) * np.sin(spec.light_angle)) / 110
    # Rounded shading: the head's rim turns away from the light, so it darkens with the distance from the face
    # centre (an ellipse about the face's size), smoothly, without an edge.
    cx, cy = CENTRE[0] + spec.offset[0], CENTRE[1] + spec.offset[1]
    half_width, half_height = 1.3 * spec.scale * spec.face_width, 1.3 * spec.scale * spec.face_height
    rim = ((_COLS - cx) / half_width) ** 2 + ((_ROWS - cy) / half_height) ** 2
    shade = 1.0 - spec.shading * np.minimum(rim, 1.5)
    image *= (spec.brightness * (1.0 + spec.light_strength * along) * shade)[..., None]  # lighting and shading
    # Weak sensor noise: uniform with standard deviation spec.noise (cheaper to draw than Gaussian).
    noise = rng.random(image.shape, dtype=np.float32)
    noise -= 0.5
    noise *= spec.noise * np.sqrt(12.0)
    image += noise
    image += 0.5  # round, not truncate, in the cast below
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def draw_face(seed: int, index: int) -> tuple[np.ndarray, FaceSpec]:
    """Face `index` of the set made with `seed`: the same (seed, index) always gives the same pixels."""
    rng = np.random.default_rng([seed, index])
    spec = sample_spec(rng)
    return render(spec, rng), spec
