"""The model at run time: the exported directory's contract (`manifest.py`) and the ONNX
Runtime encoder that serves it (`encoder.py`); no torch."""
