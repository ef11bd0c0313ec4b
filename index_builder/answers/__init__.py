"""From a query's hits to its answers: one per topic (`grouping.py`), in the shopper's
language (`query_lang.py`), or none when the best is too weak (`calibration.py`)."""
