"""Small input files in the real formats (dictd, Debian FAQ HTML, a django-oscar wheel)."""

from __future__ import annotations

import gzip
import json
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

from model_export.dictionaries import encode_dictd_number


def write_dictd(directory: Path, name: str, entries: Mapping[str, Sequence[str]]) -> Path:
    """A FreeDict-style dictd pair; each headword's translations are listed one sense per line."""
    body = b"00databaseinfo\ntest\n"
    lines = [f"00databaseinfo\t{encode_dictd_number(0)}\t{encode_dictd_number(len(body))}"]
    for head, targets in sorted(entries.items()):
        text = f"{head} /x/\n" + "".join(f"{i}. {t}\n" for i, t in enumerate(targets, 1))
        raw = text.encode("utf-8")
        lines.append(f"{head}\t{encode_dictd_number(len(body))}\t{encode_dictd_number(len(raw))}")
        body += raw
    index = directory / f"{name}.index"
    index.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with gzip.open(directory / f"{name}.dict.dz", "wb") as fh:
        fh.write(body)
    return index


def _chapter(title: str, sections: Sequence[tuple[str, str, str]]) -> str:
    parts = [f'<html><body><h1 class="title"><a id="ch"></a>Chapter 1. {title}</h1>']
    for n, (anchor, heading, answer) in enumerate(sections, 1):
        parts.append(
            f'<div class="section"><h2 class="title"><a id="{anchor}"></a>1.{n}. {heading}</h2>'
            f"<p>{answer}</p></div>"
        )
    return "".join(parts) + "</body></html>"


# English chapter "basic": three sections; German: two translated, one heading left in English,
# one section the English FAQ does not have.
FAQ_EN = [
    ("whatis", "What is this FAQ?", "A list of <b>questions</b> &amp; answers."),
    ("pronounce", "How does one pronounce Debian?", "Deb-ee-an."),
    ("kernel", "Which kernel does Debian use?", "Linux, and others."),
]
FAQ_DE = [
    ("whatis", "Was ist diese FAQ?", "Eine Liste."),
    ("pronounce", "Wie spricht man Debian aus?", "Deb-i-an."),
    ("kernel", "Which kernel does Debian use?", "Linux."),
    ("extra", "Nur auf Deutsch?", "Ja."),
]
FAQ_FR = [("pronounce", "Comment prononcer Debian ?", "Déb-i-an.")]


def write_debian_faq(root: Path) -> Path:
    (root / "de").mkdir(parents=True)
    (root / "fr").mkdir()
    (root / "basic.en.html").write_text(_chapter("Basics", FAQ_EN), encoding="utf-8")
    (root / "index.en.html").write_text(_chapter("Index", [("toc", "Contents", "")]), "utf-8")
    (root / "de" / "basic.de.html").write_text(_chapter("Grundlagen", FAQ_DE), encoding="utf-8")
    (root / "fr" / "basic.fr.html").write_text(_chapter("Bases", FAQ_FR), encoding="utf-8")
    return root


def po(entries: Sequence[tuple[str, str]], fuzzy: Sequence[str] = ()) -> str:
    out = ['msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n']
    for msgid, msgstr in entries:
        flag = "#, fuzzy\n" if msgid in fuzzy else ""
        out.append(f'{flag}msgid "{msgid}"\nmsgstr "{msgstr}"\n')
    return "\n".join(out)


OSCAR_DE = [
    ("Your basket is empty", "Ihr Warenkorb ist leer"),
    ("Add to basket", "In den Warenkorb"),
    ("Place order", "Bestellung aufgeben"),
    ("Order %(number)s placed", "Bestellung %(number)s aufgegeben"),
    ("Remove item", "Entfernen"),
    ("Delete item", "Entfernen"),  # same translation as "Remove item": ambiguous in de
    ("Only German", "Nur Deutsch"),  # no French translation: not in the corpus
    ("Fuzzy one here", "Unscharf"),
    ("Basket", "Warenkorb"),  # one word: below min_words
]
OSCAR_FR = [
    ("Your basket is empty", "Votre panier est vide"),
    ("Add to basket", "Ajouter au panier"),
    ("Place order", "Passer la commande"),
    ("Order %(number)s placed", "Commande %(number)s passée"),
    ("Remove item", "Retirer l'article"),
    ("Delete item", "Supprimer l'article"),
    ("Fuzzy one here", "Flou"),
    ("Basket", "Panier"),
]


def write_oscar_wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("oscar/locale/de/LC_MESSAGES/django.po", po(OSCAR_DE, fuzzy=["Fuzzy one here"]))
        zf.writestr("oscar/locale/fr/LC_MESSAGES/django.po", po(OSCAR_FR))
        zf.writestr("oscar/__init__.py", "")
    return path


class SearchStandIn(BaseHTTPRequestHandler):
    """A stand-in for the service's `POST /search`: JSON in, `{"results": ...}` (and whatever
    `envelope` adds) out; subclasses say which hits a request gets."""

    envelope: ClassVar[dict[str, object]] = {}

    def hits(self, body: dict[str, Any]) -> list[dict[str, object]]:
        raise NotImplementedError

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        payload = json.dumps({"results": self.hits(body), **self.envelope}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free loopback port in a thread; yields the base URL."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
