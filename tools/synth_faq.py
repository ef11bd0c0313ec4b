r"""A synthetic FAQ file of any size, for the scale benchmark (`make synth-faq`, `make bench-100k`).

    python -m tools.synth_faq --entries 100000 --include data/faq.jsonl \
        --out var/bench-100k/faq.jsonl

Rows follow the FAQ schema (index_builder/faq.py: id, question, answer, lang, market, tags). The
entries of `--include` come first, unchanged; synthetic ones fill up to `--entries`: shop
questions in five languages built from templates, products, numbers and details, so that no two
questions are the same text and the vectors spread like a real catalogue's would. The same seed
gives the same file. The file is read back with the service's own reader before it is moved
into place (`--no-check` skips that).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# topic -> per language: question templates; {p} product, {n} a number, {d} a detail.
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "return": {
        "en": ("How do I return the {p} {d}?", "Can I send back a {p} after {n} days?"),
        "es": ("¿Cómo devuelvo el {p} {d}?", "¿Puedo devolver un {p} después de {n} días?"),
        "de": (
            "Wie schicke ich den {p} {d} zurück?",
            "Kann ich einen {p} nach {n} Tagen zurückgeben?",
        ),
        "fr": ("Comment retourner le {p} {d} ?", "Puis-je renvoyer un {p} après {n} jours ?"),
        "id": ("Bagaimana cara mengembalikan {p} {d}?", "Bisakah saya retur {p} setelah {n} hari?"),
    },
    "shipping": {
        "en": ("When will my {p} {d} arrive?", "Do you ship the {p} to region {n}?"),
        "es": ("¿Cuándo llega mi {p} {d}?", "¿Envían el {p} a la región {n}?"),
        "de": ("Wann kommt mein {p} {d} an?", "Liefert ihr den {p} in Region {n}?"),
        "fr": ("Quand mon {p} {d} arrivera-t-il ?", "Livrez-vous le {p} dans la région {n} ?"),
        "id": ("Kapan {p} {d} saya sampai?", "Apakah {p} dikirim ke wilayah {n}?"),
    },
    "warranty": {
        "en": (
            "Is the {p} {d} covered by the warranty?",
            "How long is the warranty on {p} model {n}?",
        ),
        "es": ("¿La garantía cubre el {p} {d}?", "¿Cuánto dura la garantía del {p} modelo {n}?"),
        "de": (
            "Gilt die Garantie für den {p} {d}?",
            "Wie lange gilt die Garantie für {p} Modell {n}?",
        ),
        "fr": (
            "Le {p} {d} est-il couvert par la garantie ?",
            "Quelle garantie pour le {p} modèle {n} ?",
        ),
        "id": ("Apakah {p} {d} termasuk garansi?", "Berapa lama garansi {p} model {n}?"),
    },
    "payment": {
        "en": (
            "Can I pay for the {p} {d} in {n} instalments?",
            "Why was my card refused for the {p}?",
        ),
        "es": (
            "¿Puedo pagar el {p} {d} en {n} cuotas?",
            "¿Por qué rechazaron mi tarjeta para el {p}?",
        ),
        "de": (
            "Kann ich den {p} {d} in {n} Raten zahlen?",
            "Warum wurde meine Karte beim {p} abgelehnt?",
        ),
        "fr": (
            "Puis-je payer le {p} {d} en {n} fois ?",
            "Pourquoi ma carte a-t-elle été refusée pour le {p} ?",
        ),
        "id": ("Bisakah bayar {p} {d} dengan {n} cicilan?", "Kenapa kartu saya ditolak untuk {p}?"),
    },
    "size": {
        "en": ("Which size of the {p} {d} should I pick?", "Does the {p} in size {n} run small?"),
        "es": ("¿Qué talla del {p} {d} elijo?", "¿El {p} en talla {n} es pequeño?"),
        "de": ("Welche Größe vom {p} {d} passt mir?", "Fällt der {p} in Größe {n} klein aus?"),
        "fr": ("Quelle taille de {p} {d} choisir ?", "Le {p} en taille {n} taille-t-il petit ?"),
        "id": ("Ukuran {p} {d} mana yang cocok?", "Apakah {p} ukuran {n} kekecilan?"),
    },
}
PRODUCTS = (
    "jacket",
    "sneaker",
    "backpack",
    "laptop",
    "phone case",
    "blender",
    "desk lamp",
    "tent",
    "watch",
    "headphones",
    "kettle",
    "sofa",
    "mattress",
    "bicycle",
    "camera",
    "scarf",
    "coffee grinder",
    "monitor",
    "keyboard",
    "suitcase",
    "stroller",
    "drill",
    "vacuum",
    "printer",
)
DETAILS = (
    "in red",
    "in black",
    "from the outlet",
    "bought as a gift",
    "with a scratch",
    "from the summer sale",
    "ordered twice",
    "from a marketplace seller",
    "in the large box",
    "with the extra battery",
    "without the receipt",
    "from the bundle",
    "in the travel edition",
)
ANSWERS = {
    "return": "Open My Orders, choose the {p} and tap Return: 30 days, free label.",
    "shipping": "A {p} arrives in 2-5 working days; the tracking link is in your email.",
    "warranty": "Every {p} has a two-year warranty; report the fault in My Orders.",
    "payment": "Cards, PayPal and instalments are accepted for the {p}.",
    "size": "Use the size chart on the {p} page; if it does not fit, the exchange is free.",
}
MARKETS = {"en": "global", "es": "es", "de": "de", "fr": "fr", "id": "id"}


def synthetic_rows(count: int, seed: int = 10, start: int = 0) -> Iterator[dict[str, Any]]:
    """`count` FAQ rows, numbered from `start`; each question unique through its number."""
    rng = random.Random(seed)
    topics = sorted(TEMPLATES)
    langs = sorted(MARKETS)
    for i in range(start, start + count):
        topic = topics[i % len(topics)]
        lang = langs[(i // len(topics)) % len(langs)]
        template = rng.choice(TEMPLATES[topic][lang])
        product = rng.choice(PRODUCTS)
        detail = rng.choice(DETAILS)
        number = rng.randint(2, 99)
        question = template.format(p=product, d=detail, n=number)
        # The entry number makes every question distinct, like an SKU in a real catalogue.
        question = f"{question} (ref {i:06d})"
        yield {
            "id": f"synth-{topic}-{i:06d}",
            "question": question,
            "answer": ANSWERS[topic].format(p=product),
            "lang": lang,
            "market": MARKETS[lang],
            "tags": [topic, "synthetic"],
        }


def write_faq(out: Path, entries: int, include: Path | None, seed: int, check: bool) -> int:
    """Write the file (via a temporary one); returns the number of rows written."""
    included: list[str] = []
    if include is not None:
        included = [line for line in include.read_text("utf-8").splitlines() if line.strip()]
    if entries < len(included):
        raise SystemExit(f"--entries {entries} is fewer than the {len(included)} included entries")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.jsonl")
    with tmp.open("w", encoding="utf-8") as fh:
        for line in included:
            fh.write(line + "\n")
        for row in synthetic_rows(entries - len(included), seed=seed):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    if check:
        from index_builder.faq import read_faq

        items = read_faq(tmp)  # raises FaqFileError naming the line
        if len(items) != entries:
            raise SystemExit(f"{tmp}: {len(items)} entries read back, {entries} written")
    tmp.replace(out)
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.synth_faq", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--include", type=Path, help="a FAQ .jsonl whose entries come first")
    parser.add_argument("--out", type=Path, default=Path("var/bench-100k/faq.jsonl"))
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--no-check", dest="check", action="store_false")
    args = parser.parse_args()
    if args.include is not None and args.include.suffix.lower() not in (".jsonl", ".ndjson"):
        parser.error("--include must be a .jsonl FAQ file")
    written = write_faq(args.out, args.entries, args.include, args.seed, args.check)
    print(f"{args.out}: {written} FAQ entries")


if __name__ == "__main__":
    main()
