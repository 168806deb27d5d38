"""Realistic vendor CSV files and upload keys for the benchmark. Deterministic (seeded)."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from worker.core.rows import COLUMNS

VENDOR = "ACME"

_RANGES = (
    ("Kitchen", ("Cups", "Kettles", "Grinders", "Knives", "Pans")),
    ("Office", ("Paper", "Pens", "Desk Organisers", "Lamps")),
    ("Garden", ("Tools", "Planters", "Hoses", "Seeds")),
    ("Home", ("Bedding", "Towels", "Candles", "Frames")),
    ("Outdoor", ("Tents", "Backpacks", "Bottles")),
)
_ADJECTIVES = (
    "Classic",
    "Compact",
    "Deluxe",
    "Eco",
    "Heavy-Duty",
    "Lightweight",
    "Premium",
    "Rustic",
    "Stainless",
    "Vintage",
)
_NOUNS = ("Cup", "Kettle", "Grinder", "Lamp", "Planter", "Towel", "Frame", "Bottle", "Tray", "Box")
_MATERIALS = ("stoneware", "steel", "bamboo", "oak", "recycled plastic", "cotton", "glass")
_FINISHES = ("matte", "gloss", "brushed", "natural", "powder-coated")
_UNITS = ("piece", "set", "pack", "pair")


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def product_row(index: int, rng: random.Random) -> list[str]:
    """One data row in ``COLUMNS`` order; about a third of the rows have quoted cells."""
    category, subcategories = rng.choice(_RANGES)
    adjective, noun = rng.choice(_ADJECTIVES), rng.choice(_NOUNS)
    name = f"{adjective} {noun}"
    roll = rng.random()
    if roll < 0.25:
        name += f", Set of {rng.randint(2, 12)}"  # a comma: the cell is quoted
    elif roll < 0.30:
        name += ' "Pro"'  # quotes: doubled inside a quoted cell
    material, finish = rng.choice(_MATERIALS), rng.choice(_FINISHES)
    description = f"{material.capitalize()}, {finish} finish, {rng.randint(50, 2000)} ml"
    if rng.random() < 0.02:
        description += "\nHand wash only"  # a newline inside a quoted cell
    elif rng.random() < 0.1:
        description = ""
    cents = rng.randint(199, 99_999)
    compare_at = _money(cents + rng.randint(100, 5_000)) if rng.random() < 0.6 else ""
    product_id = f"{VENDOR}-{index:06d}"
    return [
        product_id,
        name,
        category,
        rng.choice(subcategories),
        description,
        f"ACM-{noun[:3].upper()}-{index:06d}",
        "Acme",
        _money(cents),
        compare_at,
        str(rng.randint(0, 500)),
        rng.choice(_UNITS),
        f"{rng.randint(5, 25_000) / 1000:.3f}" if rng.random() < 0.9 else "",
        f"{rng.randint(5, 80)}x{rng.randint(5, 80)}x{rng.randint(2, 60)}",
        f"https://cdn.acme.example/products/{product_id.lower()}.jpg",
    ]


def write_csv(path: Path, rows: int, *, seed: int) -> Path:
    """A CSV upload with the contract's header and ``rows`` data rows (CRLF, as csv writes)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for index in range(1, rows + 1):
            writer.writerow(product_row(index, rng))
    return path


class KeyClock:
    """Hands out upload keys with distinct timestamps, one second apart."""

    def __init__(self, start: datetime | None = None) -> None:
        self._next = (start or datetime.now(UTC)).replace(microsecond=0)

    def key(self) -> str:
        stamp = self._next.strftime("%Y%m%d_%H%M%S")
        self._next += timedelta(seconds=1)
        return f"uploads/{VENDOR}/{VENDOR}_{stamp}.csv"


def upload_id(key: str) -> str:
    """``UPLOAD_{VENDOR}_{YYYYMMDD}_{HHMMSS}`` for a key that :class:`KeyClock` made."""
    return "UPLOAD_" + key.rsplit("/", 1)[-1].removesuffix(".csv")
