"""Code-switched encoder training: config, data, losses, trainer, CLI (torch lives here only).

Usage (`faq-model` carries the same commands):

    # dictionaries: Debian FreeDict packages (scripts/ensure-debs.sh dict-freedict-eng-deu ...),
    # per language and direction as a run config's [codeswitch.dictionaries.<lang>] names them
    faq-model dict-coverage --config configs/train/cpu-smoke.toml
    faq-model codeswitch --lang de --text "Wo ist meine Bestellung"
    # training pairs (django-oscar wheel from `pip download django-oscar --no-deps -d DIR`)
    python -m model_export.training.cli build-data --source oscar \
        --input DIR/django_oscar-4.2.1-py3-none-any.whl --out artifacts/train-data/oscar.jsonl
    python -m model_export.training.cli build-data --source faq \
        --input data/faq.jsonl --out artifacts/train-data/faq.jsonl
    # a run: everything it uses is in the config; --resume continues from the last checkpoint
    python -m model_export.training.cli train --config configs/train/recipe.toml [--resume]
    # the shop's own data: `make train` (configs/train/shop.toml), see the README

The output `<output_dir>/model/` is a transformers directory for `onnx_export.export_onnx`.
"""
