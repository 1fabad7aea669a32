"""A picture of a part: its text with every token shaded by how sure the model was of it.

One PNG, drawn with matplotlib (no display needed), on its own light card so that it reads the
same in Discord's dark and light themes. The text wraps at word boundaries in a monospaced font,
each token on a band of colour from red (the model gave it under 1 %) through amber to green
(it was sure); a legend says so. Slow enough (a few hundred ms) to belong in a thread.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence

from bot.explain import TokenNote

WIDTH_PX = 1000
DPI = 100
FONT_PT = 11
FONT = "DejaVu Sans Mono"  # ships with matplotlib, so every host draws the same picture
MARGIN_PX = 24
LINE_PX = 24
CARD = "#fbfbf8"
INK = "#1f2328"
FLOOR = 0.001  # the legend's scale: from 0.1 % to 100 %, logarithmic


@functools.cache
def char_px() -> float:
    """The advance of one character of the font, in pixels, as matplotlib draws it."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(200, 100, DPI)
    font = FontProperties(family=FONT, size=FONT_PT)
    width, _, _ = renderer.get_text_width_height_descent("x" * 100, font, ismath=False)
    return width / 100


@functools.cache
def _glyphs() -> frozenset[int]:
    """The characters the font can draw."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties(family=FONT))
    return frozenset(FT2Font(path).get_charmap())


def drawable(text: str) -> str:
    """``text`` with every character the font lacks (emoji, CJK, …) shown as □, one column each."""
    glyphs = _glyphs()
    return "".join(c if ord(c) in glyphs or c == "\n" else "□" for c in text)


def layout(notes: Sequence[TokenNote], columns: int) -> list[list[tuple[int, str]]]:
    """Lines of ``(token index, text)`` pieces, wrapped at spaces within ``columns``."""
    lines: list[list[tuple[int, str]]] = [[]]
    used = 0
    for index, note in enumerate(notes):
        text = drawable(note.text.replace("\t", "    "))
        for n, segment in enumerate(text.split("\n")):
            if n:  # a line break inside the token
                lines.append([])
                used = 0
            while segment:
                room = columns - used
                if len(segment) <= room:
                    lines[-1].append((index, segment))
                    used += len(segment)
                    break
                if used and segment[:1].isspace():  # wrap before the word
                    lines.append([])
                    used, segment = 0, segment.lstrip(" ")
                elif used:  # the word does not fit: move it whole to a new line
                    lines.append([])
                    used = 0
                else:  # longer than a line: cut it
                    lines[-1].append((index, segment[:room]))
                    lines.append([])
                    used, segment = 0, segment[room:]
    return lines


def shade(p: float) -> tuple[float, float, float, float]:
    """The band colour for a token the model gave probability ``p``."""
    from matplotlib import colormaps

    position = (math.log10(max(p, FLOOR)) - math.log10(FLOOR)) / -math.log10(FLOOR)
    r, g, b, _ = colormaps["RdYlGn"](0.08 + 0.84 * position)
    return (r, g, b, 0.55)


def confidence_png(notes: Sequence[TokenNote], title: str) -> bytes:
    """The part as a PNG, ``WIDTH_PX`` wide and as tall as its text needs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    cw = char_px()
    columns = int((WIDTH_PX - 2 * MARGIN_PX) // cw)
    lines = layout(notes, columns)
    header, legend = 48, 76
    height = header + len(lines) * LINE_PX + legend + MARGIN_PX
    figure = Figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI, facecolor=CARD)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH_PX)
    ax.set_ylim(height, 0)
    ax.axis("off")
    text_style = {"fontfamily": FONT, "fontsize": FONT_PT, "color": INK, "parse_math": False}
    ax.text(MARGIN_PX, 18, drawable(title), va="top", fontsize=FONT_PT + 2, fontweight="bold",
            color=INK, parse_math=False)  # fmt: skip
    for row, pieces in enumerate(lines):
        top = header + row * LINE_PX
        x = MARGIN_PX
        for index, piece in pieces:
            width = len(piece) * cw
            ax.add_patch(Rectangle((x, top + 2), width, LINE_PX - 4, color=shade(notes[index].p_model),
                                   linewidth=0))  # fmt: skip
            x += width
        ax.text(MARGIN_PX, top + LINE_PX / 2, "".join(p for _, p in pieces), va="center",
                **text_style)  # fmt: skip
    # The legend: the same bands, from FLOOR to 100 %, on a logarithmic scale.
    top, steps, span = height - MARGIN_PX - 36, 120, WIDTH_PX * 0.4
    for i in range(steps):
        p = 10 ** (math.log10(FLOOR) * (1 - i / (steps - 1)))
        ax.add_patch(Rectangle((MARGIN_PX + i * span / steps, top), span / steps + 0.5, 14,
                               color=shade(p), linewidth=0))  # fmt: skip
    for p, label in ((0.001, "0.1 %"), (0.01, "1 %"), (0.1, "10 %"), (1, "100 %")):
        x = MARGIN_PX + (math.log10(p) - math.log10(FLOOR)) / -math.log10(FLOOR) * span
        ax.text(x, top + 28, label, ha="center", va="center", fontsize=9, color=INK,
                parse_math=False)  # fmt: skip
    ax.text(MARGIN_PX + span + 16, top + 7, "how likely the model thought each token was",
            va="center", fontsize=9, color=INK, parse_math=False)  # fmt: skip
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, facecolor=CARD)
    return out.getvalue()
