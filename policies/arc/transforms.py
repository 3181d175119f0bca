"""SEAL's augmentation families for ARC, every one an invertible function on grids.

An `Augmentation` is a named chain of elementary operations, each with its inverse, so a
prediction made on an augmented view of a task maps back to the original frame (`inverse`). The
inverse of a generated grid can fail (an odd height where the view doubled it): it returns None.

Families (SEAL section 4.1, after Akyurek et al. 2024): basic (rotations by 90/180/270, horizontal
and vertical flips, the two diagonal reflections, a translation), size (double the resolution, the
height or the width), chain (a rotation, flip or reflection combined with doubling the
resolution), repeat (the grid tiled 2 x 1, 1 x 2 or 2 x 2). A colour permutation (colours 1-9;
0 is the background and stays) and the order of the demonstrations are permuted on top of any
choice. A translation pads background rows and columns on the top and left, so its inverse crops
them; the content never wraps around.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from policies.arc.grids import Grid, fits

Op = tuple[str, tuple[int, ...]]  # (operation name, its parameters)


def _grid(a: np.ndarray) -> Grid:
    return tuple(tuple(int(c) for c in row) for row in a)


def _crop(a: np.ndarray, dy: int, dx: int) -> np.ndarray | None:
    if a.shape[0] <= dy or a.shape[1] <= dx:
        return None
    return a[dy:, dx:]


def _shrink(a: np.ndarray, fy: int, fx: int) -> np.ndarray | None:
    if a.shape[0] % fy or a.shape[1] % fx:
        return None
    return a[::fy, ::fx]


def _first_tile(a: np.ndarray, ny: int, nx: int) -> np.ndarray | None:
    if a.shape[0] % ny or a.shape[1] % nx:
        return None
    return a[: a.shape[0] // ny, : a.shape[1] // nx]


def _recolour(a: np.ndarray, table: tuple[int, ...]) -> np.ndarray:
    return np.asarray(table)[a]


def _inverse_table(table: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * 10
    for colour, image in enumerate(table):
        inv[image] = colour
    return tuple(inv)


# name -> (forward, inverse); each takes the array and the op's parameters
_OPS: dict[str, tuple[Callable, Callable]] = {
    "rot90": (lambda a, p: np.rot90(a, 1), lambda a, p: np.rot90(a, -1)),
    "rot180": (lambda a, p: np.rot90(a, 2), lambda a, p: np.rot90(a, 2)),
    "rot270": (lambda a, p: np.rot90(a, 3), lambda a, p: np.rot90(a, -3)),
    "flip_lr": (lambda a, p: a[:, ::-1], lambda a, p: a[:, ::-1]),
    "flip_ud": (lambda a, p: a[::-1, :], lambda a, p: a[::-1, :]),
    "transpose": (lambda a, p: a.T, lambda a, p: a.T),
    "antitranspose": (lambda a, p: np.rot90(a, 2).T, lambda a, p: np.rot90(a, 2).T),
    "translate": (lambda a, p: np.pad(a, ((p[0], 0), (p[1], 0))), lambda a, p: _crop(a, *p)),
    "upscale": (
        lambda a, p: np.repeat(np.repeat(a, p[0], 0), p[1], 1),
        lambda a, p: _shrink(a, *p),
    ),
    "tile": (lambda a, p: np.tile(a, p), lambda a, p: _first_tile(a, *p)),
    "colours": (lambda a, p: _recolour(a, p), lambda a, p: _recolour(a, _inverse_table(p))),
}
GEOMETRIC = ("rot90", "rot180", "rot270", "flip_lr", "flip_ud", "transpose", "antitranspose")


@dataclass(frozen=True)
class Augmentation:
    name: str
    family: str  # identity | basic | size | chain | repeat | colour
    ops: tuple[Op, ...]

    def __call__(self, grid: Grid) -> Grid:
        a = np.asarray(grid)
        for name, params in self.ops:
            a = _OPS[name][0](a, params)
        return _grid(a)

    def inverse(self, grid: Grid) -> Grid | None:
        """The grid in the original frame; None when `grid` cannot come from this view."""
        a: np.ndarray | None = np.asarray(grid)
        for name, params in reversed(self.ops):
            a = _OPS[name][1](a, params)
            if a is None:
                return None
        return _grid(a)

    def then(self, other: Augmentation) -> Augmentation:
        """This augmentation followed by `other`."""
        names = [n for n in (self.name, other.name) if n != "identity"]
        return Augmentation("+".join(names) or "identity", self.family, self.ops + other.ops)

    def fits(self, grid: Grid) -> bool:
        """Whether the augmented grid stays within ARC's 30 x 30."""
        return fits(self(grid))


IDENTITY = Augmentation("identity", "identity", ())


def _one(name: str, family: str, op: str, *params: int) -> Augmentation:
    return Augmentation(name, family, ((op, tuple(params)),))


def translation(dy: int, dx: int) -> Augmentation:
    return _one(f"translate{dy}{dx}", "basic", "translate", dy, dx)


def colour_permutation(rng: random.Random) -> Augmentation:
    """A random permutation of colours 1-9 (the background 0 stays)."""
    colours = list(range(1, 10))
    rng.shuffle(colours)
    table = (0, *colours)
    return Augmentation("colours" + "".join(map(str, colours)), "colour", (("colours", table),))


def basic(translate: tuple[int, int] = (1, 1)) -> list[Augmentation]:
    return [_one(n, "basic", n) for n in GEOMETRIC] + [translation(*translate)]


def size() -> list[Augmentation]:
    return [
        _one("upscale22", "size", "upscale", 2, 2),
        _one("upscale21", "size", "upscale", 2, 1),
        _one("upscale12", "size", "upscale", 1, 2),
    ]


def chain() -> list[Augmentation]:
    double = _one("upscale22", "chain", "upscale", 2, 2)
    return [Augmentation(f"{n}+upscale22", "chain", ((n, ()), *double.ops)) for n in GEOMETRIC]


def repeat() -> list[Augmentation]:
    return [
        _one("tile21", "repeat", "tile", 2, 1),
        _one("tile12", "repeat", "tile", 1, 2),
        _one("tile22", "repeat", "tile", 2, 2),
    ]


FAMILIES: dict[str, Callable[[], list[Augmentation]]] = {
    "basic": basic,
    "size": size,
    "chain": chain,
    "repeat": repeat,
}


def augmentations(families: set[str], rng: random.Random | None = None) -> list[Augmentation]:
    """The augmentations of the chosen families (the basic translation's offset drawn by `rng`)."""
    out = []
    for family in FAMILIES:
        if family not in families:
            continue
        if family == "basic" and rng is not None:
            out.extend(basic((rng.randint(1, 2), rng.randint(1, 2))))
        else:
            out.extend(FAMILIES[family]())
    return out


def every_augmentation() -> list[Augmentation]:
    """All of them (both translation offsets), for tests and listings."""
    return [
        *basic((1, 1)),
        translation(2, 1),
        translation(1, 2),
        translation(2, 2),
        *size(),
        *chain(),
        *repeat(),
    ]


VIEWS = (
    "identity",
    "transpose",
    "flip_lr",
    "rot90",
    "flip_ud",
    "rot180",
    "antitranspose",
    "rot270",
)


def inference_views(n: int) -> list[Augmentation]:
    """The first `n` views answers are voted over: the task as given, then reflections and
    rotations (no size changes: they multiply the tokens to generate)."""
    out = [IDENTITY] + [_one(v, "basic", v) for v in VIEWS[1:]]
    return out[: max(1, n)]
