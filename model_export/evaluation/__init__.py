"""Retrieval evaluation on third-party data: cross-lingual and code-switched FAQ queries.

`datasets` reads the Debian FAQ and django-oscar's shop strings, `queries` builds the query kinds
(translated, English, and code-switched in both directions with a dictionary disjoint from the
training one) and writes them with checksums, `metrics` scores rankings, `encoders` wraps the
models (transformers directory, exported ONNX through the service's encoder, a running service
over HTTP), `report` writes JSON, markdown and a PNG, and `cli` runs it all.
"""
