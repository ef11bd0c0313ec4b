"""Cleaning bilingual dictionaries into substitutions a bilingual speaker would make.

One module for the rules that both training (`training/switching.py`) and the evaluation sets
(`evaluation/queries.py`) apply, so the two never disagree on what a usable entry is:

* `plausible`: a dictionary side worth switching is a word or a short phrase; no digits, IPA
  transcriptions, usage-note placeholders ("jdm", "sth"), ellipses or affix fragments ("in-",
  "un…");
* cross-references ("siehe …", "see …", "voir …") are pointers, not translations;
* primary sense first: FreeDict's order of senses is not frequency ("order" -> "Anordnung,
  Befehl, Auftrag, Bestellung"; a reversed dictionary is in headword order: "Bestellung" ->
  "commission, mailorder, order"), so `clean` ranks the surviving translations by their word
  frequency in the target language (the `wordfreq` package, offline data for about 40
  languages; dictionary order where it has no data) and drops the very rare ones;
  `primary_senses` (the evaluation's rule) keeps the first plausible translation;
* function words (articles, pronouns, prepositions, conjunctions, auxiliaries) are not switched
  unless the config says so: their translations are the false friends of code-switching
  ("no" -> "Nein" inside Portuguese, "a" -> "ein" inside Spanish), and shoppers switch content
  words ("where is my pedido"), not articles.

The function-word lists are small closed-class lists written here on purpose: the stopword
packages on PyPI (`stop-words`, `stopwordsiso`) were tried and their English lists hold "order",
"number", "date", "page", "value" and "name", the very words a shop query switches.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from model_export.dictionaries import Dictionary, normalise_key
from model_export.lexicons.tags import tag_score

# Placeholders of dictionary usage notes ("jdm etw geben", "to give sb sth"), not words.
NOTE_WORDS = frozenset(
    [
        "jd",
        "jdm",
        "jdn",
        "jds",
        "etw",
        "jdetw",
        "jdnetw",
        "jdmetw",
        "sth",
        "sb",
        "so.",
        "sth.",
        "sb.",
        "qn",
        "qch",
        "qc",
        "qlc",
        "qc.",
        "alg",
        "algo",
    ]
)

# Words that open a cross-reference in the FreeDict exports (and MUSE files made from them).
_XREF_RE = re.compile(
    r"^(siehe|see|vgl|cf|voir|vedi|véase|vea|ver|veja|zie|bkz)\b\.?", re.IGNORECASE
)
# Fragments: leading/trailing hyphens of every kind and ellipses ("in-", "-ung", "un...").
_FRAGMENT_CHARS = "-\u2010\u2011\u2012\u2013\u2014"


def plausible(word: str, max_words: int = 2) -> bool:
    """A dictionary side worth switching: a word or short phrase, no digits, affixes or notes."""
    words = word.split()
    return (
        0 < len(words) <= max_words
        and any(c.isalpha() for c in word)
        and not any(c.isdigit() for c in word)
        and "..." not in word
        and "/" not in word  # IPA transcriptions in some dictd entries
        and "\u2026" not in word
        and not word.startswith(("-", "'"))
        and not word.endswith("-")
        and not any(w.casefold() in NOTE_WORDS for w in words)
    )


def rejection(word: str, max_words: int = 2) -> str | None:
    """Why a translation is dropped ("xref", "gloss", "fragment", "noise"), or None if kept."""
    if _XREF_RE.match(word.strip()):
        return "xref"
    if len(word.split()) > max_words:
        return "gloss"
    stripped = word.strip()
    if stripped.startswith(_FRAGMENT_CHARS) or stripped.endswith((*_FRAGMENT_CHARS, "\u2026")):
        return "fragment"
    return None if plausible(word, max_words) else "noise"


def _closed(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Closed-class words per language (lower case). Extend per language with
# `codeswitch.function_words_files`; switch them anyway with `codeswitch.switch_function_words`.
FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "en": _closed(
        """a an the this that these those i me my mine you your yours he him his she her hers it
        its we us our ours they them their theirs who whom whose which what of to in on at by for
        from with without about into onto over under up down out off as than then and or but nor
        so if because while when where how why not no yes do does did done is am are was were be
        been being have has had having will would shall should can could may might must there
        here all any some each every both either neither such very too also just only own same
        other s t re ve ll d m don"""
    ),
    "de": _closed(
        """der die das den dem des ein eine einen einem einer eines ich mich mir mein meine meinen
        meinem meiner du dich dir dein deine er ihn ihm sein seine sie ihr ihre ihren ihrem es wir
        uns unser unsere euch euer eure man wer wen wem wessen was welche welcher welches von zu
        zum zur in im ins an am auf aus bei mit nach seit für gegen ohne um über unter vor hinter
        neben zwischen durch und oder aber denn sondern dass ob wenn als wie wo wann warum nicht
        kein keine keinen ja nein ist bin bist sind seid war waren wird werden wurde wurden hat
        habe hast haben hatte hatten kann kannst können konnte muss müssen soll sollen will
        wollen darf dürfen möchte noch schon auch nur sehr so da dies diese dieser dieses
        jener"""
    ),
    "fr": _closed(
        """le la les l un une des du de d au aux ce cet cette ces je j me m moi mon ma mes tu te
        t toi ton ta tes il elle on nous vous ils elles lui leur leurs se s son sa ses notre nos
        votre vos qui que qu quoi dont où à en dans sur sous par pour avec sans chez entre vers et
        ou mais donc car ni si comme quand ne n pas plus est suis es sommes êtes sont était
        été être ai as a avons avez ont avait peut peux pouvez doit dois devez y très aussi
        déjà"""
    ),
    "es": _closed(
        """el la los las lo un una unos unas del al de yo me mi mis mí tu tus te tú él ella ello
        nosotros nosotras vosotros ellos ellas usted ustedes le les se su sus nuestro nuestra
        que qué quien quién cual cuál donde dónde cuando cuándo como cómo a en con sin por para
        sobre entre hasta desde hacia y e o u pero ni si no sí es soy eres somos son era fue ser
        está estoy están estar he ha han hay había puedo puede pueden debo debe muy ya
        también"""
    ),
    "it": _closed(
        """il lo la i gli le l un uno una un' del dello della dei degli delle al allo alla ai agli
        alle dal dalla dai nel nella nei nelle sul sulla io me mi mio mia miei mie tu te ti tuo
        tua lui lei noi ci nostro nostra voi vi vostro loro si suo sua che chi cui cosa dove
        quando come di a da in con su per tra fra e ed o ma se non né è sono sei siamo siete era
        essere ho hai ha abbiamo avete hanno posso può possono devo deve molto già anche"""
    ),
    "nl": _closed(
        """de het een der des ik mij me mijn jij je jou jouw u uw hij hem zijn zij ze haar wij we
        ons onze jullie hun wie wat welke waar wanneer hoe waarom van te in op aan bij met naar
        uit voor door over onder tot om zonder tussen en of maar want dus als dan niet geen ja nee
        is ben bent zijn was waren wordt worden werd heb hebt heeft hebben had kan kun kunt
        kunnen moet moeten mag wil willen zal zullen er hier al ook nog zeer dit dat deze
        die"""
    ),
    "pt": _closed(
        """o a os as um uma uns umas do da dos das no na nos nas ao aos à às pelo pela de em por
        para com sem sobre entre até desde eu me mim meu minha meus minhas tu te você vocês ele
        ela eles elas lhe lhes se seu sua seus suas nosso nossa que quem qual onde quando como e
        ou mas nem se não sim é sou somos são era foi ser está estou estão estar tem tenho têm
        ter posso pode podem devo deve muito já também"""
    ),
    "id": _closed(
        """yang dan di ke dari ini itu saya aku kamu anda dia ia kami kita mereka nya untuk dengan
        pada dalam atau tetapi tapi jika kalau karena apa siapa mana kapan bagaimana mengapa
        kenapa tidak bukan ya sudah belum akan bisa dapat harus juga saja lagi sangat
        adalah"""
    ),
    "ms": _closed(
        """yang dan di ke dari ini itu saya aku awak anda dia ia kami kita mereka nya untuk dengan
        pada dalam atau tetapi jika kalau kerana apa siapa mana bila bagaimana mengapa kenapa
        tidak bukan ya sudah belum akan boleh dapat harus juga sahaja lagi sangat adalah"""
    ),
    # Hindi as shoppers type it in Latin script (the romanised tables, `codeswitch.romanise`):
    # "mera order kaha hai" must keep "mera" and "hai", as English text keeps "my" and "is".
    "hi": _closed(
        """mera meri mere tera teri tere uska uski uske hamara hamari hamare aapka aapki aapke
        main mai mujhe hum humein tum aap woh wo yeh ye is us ka ki ke ko se me mein par pe aur
        ya lekin kya kaun kaise kab kaha kahan kyu kyun nahi na haan hai hain tha thi the ho hu
        hoon hoga hogi raha rahi rahe bhi hi to toh"""
    ),
    "tr": _closed(
        """bir bu şu o ben sen biz siz onlar benim senin onun bizim sizin ve veya ya da ile için
        gibi kadar ama fakat çünkü eğer ne kim nerede neden nasıl ne zaman değil evet hayır mi mı
        mu mü da de ki çok daha en her"""  # noqa: RUF001 (Turkish dotless i)
    ),
}


def function_words(
    lang: str,
    *,
    extra_files: Mapping[str, Iterable[str | Path]] | None = None,
) -> frozenset[str]:
    """The closed-class words of `lang` (normalised), plus one word per line of `extra_files`."""
    words = set(FUNCTION_WORDS.get(lang, frozenset()))
    for path in (extra_files or {}).get(lang, ()):
        with Path(path).open(encoding="utf-8") as fh:
            words.update(normalise_key(line) for line in fh if line.strip())
    return frozenset(normalise_key(w) for w in words)


@dataclass
class CleaningReport:
    """What cleaning kept and dropped (translations counted one by one, headwords apart)."""

    headwords_in: int = 0
    headwords_out: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "headwords_in": self.headwords_in,
            "headwords_out": self.headwords_out,
            "dropped": dict(sorted(self.dropped.items())),
        }


Ranker = Callable[[str], float]
# Sort key of a translation `tgt` of `src`, best highest (booleans and scores, compared in order).
SenseOrder = Callable[[str, str], tuple[float, ...]]


@functools.cache
def frequency_ranker(lang: str) -> Ranker | None:
    """Zipf frequency (0-8) of a word or phrase in `lang`, or None where wordfreq has no data.

    A phrase counts as its rarest word. One dictionary lookup per word: a million translations
    are ranked in about a second, where `wordfreq.zipf_frequency` would re-tokenise each.
    """
    import math

    import wordfreq

    if lang not in wordfreq.available_languages():
        return None
    freqs: dict[str, float] = wordfreq.get_frequency_dict(lang)

    def zipf(text: str) -> float:
        values = [freqs.get(w, 0.0) for w in normalise_key(text).split()]
        low = min(values, default=0.0)
        return math.log10(low) + 9.0 if low > 0 else 0.0

    return zipf


def sense_key(
    d: Dictionary, src_rank: Ranker | None, tgt_rank: Ranker
) -> Callable[[str, str], tuple[bool, float]]:
    """Sort key of a translation `tgt` of `src`: mutual best first, then target frequency.

    Mutual: `src` is the most frequent source word among those that list `tgt`. "order" ->
    "Stand" is frequent German but "Stand" is first "state"/"stand"; "order" -> "Bestellung"
    is mutual. Without source frequencies, frequency alone.
    """
    best_src: dict[str, str] = {}
    if src_rank is not None:
        score: dict[str, float] = {}
        for src, targets in d.entries.items():
            f = src_rank(src)
            for tgt in targets:
                norm = normalise_key(tgt)
                if f > score.get(norm, -1.0):
                    score[norm], best_src[norm] = f, src

    def key(src: str, tgt: str) -> tuple[bool, float]:
        return (best_src.get(normalise_key(tgt)) == src, tgt_rank(tgt))

    return key


def domain_sense_key(
    d: Dictionary,
    *,
    in_domain: Callable[[str], bool] | None,
    src_rank: Ranker | None,
    tgt_rank: Ranker | None,
) -> SenseOrder:
    """Sort key for a shop: in-domain first, then subject tags, then `sense_key`'s frequency.

    1. the translation occurs in the shop's own text in the target language (its FAQ
       translations, the shopper log's train split): the shop's word for the thing;
    2. the source's marks (`lexicons.tags.tag_score`: a shop subject field, a common word,
       not archaic or slang);
    3. mutual best and target-language frequency (`sense_key`, wordfreq), where wordfreq has
       the language.
    """
    frequency = sense_key(d, src_rank, tgt_rank) if tgt_rank is not None else None

    def key(src: str, tgt: str) -> tuple[float, ...]:
        shop = in_domain is not None and in_domain(tgt)
        marks = tag_score(d.tags.get((src, tgt), ()))
        mutual, zipf = frequency(src, tgt) if frequency is not None else (False, 0.0)
        return (shop, marks, mutual, zipf)

    return key


def clean(
    d: Dictionary,
    *,
    stop: frozenset[str] = frozenset(),
    max_translations: int = 3,
    max_words: int = 2,
    rank: Ranker | None = None,
    min_zipf: float = 0.0,
    order: SenseOrder | None = None,
    max_phrase_words: int = 0,
    in_domain: Callable[[str], bool] | None = None,
) -> tuple[Dictionary, CleaningReport]:
    """Primary senses of plausible headwords; stop headwords, xrefs, glosses, fragments dropped.

    `stop` holds normalised source-side words that are never switched (function words). With
    `rank` (a target-language frequency) translations below `min_zipf` are dropped as "rare";
    `order` (see `sense_key`, `domain_sense_key`) sorts the survivors, best first (ties in
    dictionary order); without it they keep the dictionary's order. The first
    `max_translations` survivors are kept (0 keeps all).

    Phrases: headwords of up to `max_phrase_words` words (0: `max_words`) are kept whole, so
    "cash on delivery" switches as one unit instead of word by word or not at all; a
    translation longer than `max_words` is a gloss unless the shop's own text has it
    (`in_domain`: "Zahlung bei Lieferung"). A translation the shop's text has is never "rare":
    "Sendungsnummer" is rarer in general German than the zipf floor, and exactly the word.
    """
    phrase_words = max_phrase_words or max_words
    out = Dictionary(d.src_lang, d.tgt_lang, sources=list(d.sources))
    report = CleaningReport(headwords_in=len(d))
    for src, targets in d.entries.items():
        if src in stop:
            report.dropped["function word"] += 1
            continue
        if not plausible(src, phrase_words):
            report.dropped["headword"] += 1
            continue
        survivors: list[str] = []
        for tgt in targets:
            shop_word = in_domain is not None and in_domain(tgt)
            reason = rejection(tgt, phrase_words if shop_word else max_words)
            if reason is None and rank is not None and not shop_word and rank(tgt) < min_zipf:
                reason = "rare"
            if reason is not None:
                report.dropped[reason] += 1
            else:
                survivors.append(tgt)
        if order is not None:
            # reverse=True keeps ties in dictionary order too (Python's sort stays stable).
            survivors.sort(key=lambda t: order(src, t), reverse=True)
        kept = 0
        for tgt in survivors:
            if max_translations <= 0 or kept < max_translations:
                out.add(src, tgt, d.tags.get((src, tgt), ()))
                kept += 1
            else:
                report.dropped["later sense"] += 1
        if src not in out.entries:
            report.dropped["headword without translation"] += 1
    report.headwords_out = len(out)
    return out, report


def invert(d: Dictionary, casing: Mapping[str, str] | None = None) -> Dictionary:
    """src->tgt becomes tgt->src (translations become headwords).

    Headwords are stored normalised (casefolded); `casing` maps them back to the dictionary's
    spelling, so a German noun stays capitalised when it becomes a translation.
    """
    out = Dictionary(d.tgt_lang, d.src_lang, sources=list(d.sources))
    for src, targets in d.entries.items():
        for tgt in targets:
            out.add(tgt, casing.get(src, src) if casing else src, d.tags.get((src, tgt), ()))
    return out


def primary_senses(d: Dictionary) -> Dictionary:
    """Each headword with its first plausible translation only (the evaluation's choice).

    Inverting a whole dictionary makes every rare sense a translation of a common word
    ("is" -> "estce qu"); keeping primary senses keeps the substitutions a speaker would make.
    """
    out = Dictionary(d.src_lang, d.tgt_lang, sources=list(d.sources))
    for src, targets in d.entries.items():
        # `plausible` and not `rejection`: the published evaluation sets (checksums in
        # configs/eval/eval-sets.json) were built with exactly this rule.
        firsts = [t for t in targets if plausible(t)]
        if firsts and plausible(src):
            out.add(src, firsts[0])
    return out
