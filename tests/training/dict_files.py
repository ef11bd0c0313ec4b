"""Small dictionary files in the real formats, written by the tests themselves."""

from __future__ import annotations

import gzip
from pathlib import Path

from model_export.dictionaries import encode_dictd_number

# headword -> dictd entry body in the layout of Debian's FreeDict packages
FREEDICT_ENTRIES = {
    "order": "order /'ɔ:də/\nBestellung <fem>, Auftrag <masc> [econ.]\n"
    '      "place an order"  - einen Auftrag erteilen\n   Synonym: {purchase order}\n',
    "cat": "cat /kæt/\n1. Katze <fem>\n2. Kater <masc>\n",
    "purchase order": "purchase order /'pɜ:tʃəs 'ɔ:də/\nKaufauftrag <masc>\n",
    "refund": "refund /'ri:fʌnd/ <n>\nRückerstattung <fem>\n see: {refunds}\n",
}


def write_freedict(directory: Path, name: str = "freedict-eng-deu") -> Path:
    """A real dictd pair: `.index` with base64 offsets and a gzip `.dict.dz`."""
    body = b""
    lines = []
    header = b"00databaseinfo\nThis is a test dictionary.\n"
    lines.append(f"00databaseinfo\t{encode_dictd_number(0)}\t{encode_dictd_number(len(header))}")
    body += header
    for head, text in sorted(FREEDICT_ENTRIES.items()):
        raw = text.encode()
        lines.append(f"{head}\t{encode_dictd_number(len(body))}\t{encode_dictd_number(len(raw))}")
        body += raw
    index = directory / f"{name}.index"
    index.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with gzip.open(directory / f"{name}.dict.dz", "wb") as fh:
        fh.write(body)
    return index


def write_muse(directory: Path, name: str = "en-fr.txt") -> Path:
    path = directory / name
    path.write_text(
        "order commande\norder ordre\ncat chat\nRefund remboursement\n", encoding="utf-8"
    )
    return path


def write_tsv(directory: Path, name: str = "shop-de.tsv") -> Path:
    path = directory / name
    path.write_text(
        "# shop words FreeDict lacks\n"
        "refund\tErstattung; Rückzahlung\n"
        "track my parcel\tmein Paket verfolgen\n",
        encoding="utf-8",
    )
    return path
