"""Code-switched encoder training: config, data, losses, trainer, CLI (torch lives here only).

Usage (the project CLI `faq-model` carries the same commands once `cli.register` is wired in):

    # dictionaries: Debian FreeDict packages (scripts/ensure-debs.sh dict-freedict-eng-deu ...)
    python -m model_export.training.cli dict-coverage \
        --dict /usr/share/dictd/freedict-eng-deu.index --corpus data/faq.jsonl
    # training pairs (django-oscar wheel from `pip download django-oscar --no-deps -d DIR`)
    python -m model_export.training.cli build-data --source oscar \
        --input DIR/django_oscar-4.2.1-py3-none-any.whl --out artifacts/train-data/oscar.jsonl
    python -m model_export.training.cli build-data --source faq \
        --input data/faq.jsonl --out artifacts/train-data/faq.jsonl
    # a run: everything it uses is in the config; --resume continues from the last checkpoint
    python -m model_export.training.cli train --config configs/train/recipe.toml [--resume]

The output `<output_dir>/model/` is a transformers directory for `onnx_export.export_onnx`.
"""
