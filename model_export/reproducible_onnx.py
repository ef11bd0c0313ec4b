"""Make an exported ONNX file a function of the weights alone, not of where it was built.

torch.onnx's dynamo exporter records, for every node, the Python stack that produced it
(`pkg.torch.onnx.stack_trace`: absolute paths of this checkout and of the venv's site-packages),
the FX node it came from, its module hierarchy, and the ExportedProgram's signature on the graph;
onnxscript's optimiser adds the rewrite rule and folded constants to values. None of it is read
by ONNX Runtime. Two clones exporting identical weights wrote files with different bytes (the
checkout path appeared 2,635 times in the base model), hence different hashes and model
fingerprints, and the fingerprint guard refused an index built by the other clone; the paths
also leaked build machines' layout into a shipped artifact.

So every exported file loses all metadata properties and doc strings below the model level:
the graph's, every node's, value's and initializer's, and those of functions and subgraphs.
The model's own `metadata_props` stay (they hold deliberate, deterministic facts such as
onnxruntime.quantization's `onnx.infer`), and so do node names, which the exporter derives from
the module structure, not from the file system.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _clear(items: Iterable[Any]) -> None:
    for item in items:
        item.doc_string = ""
        del item.metadata_props[:]


def _strip_nodes(nodes: Iterable[Any]) -> None:
    for node in nodes:
        node.doc_string = ""
        del node.metadata_props[:]
        for attr in node.attribute:
            attr.doc_string = ""
            # Control flow (If, Loop, Scan) carries whole graphs in attributes.
            if attr.HasField("g"):
                _strip_graph(attr.g)
            for sub in attr.graphs:
                _strip_graph(sub)


def _strip_graph(graph: Any) -> None:
    graph.doc_string = ""
    del graph.metadata_props[:]
    _clear([*graph.input, *graph.output, *graph.value_info, *graph.initializer])
    _strip_nodes(graph.node)


def strip_build_metadata(model: Any) -> Any:
    """Remove doc strings and debug metadata from an `onnx.ModelProto` in place; return it."""
    model.doc_string = ""
    _strip_graph(model.graph)
    for function in model.functions:
        function.doc_string = ""
        del function.metadata_props[:]
        _clear(function.value_info)
        _strip_nodes(function.node)
    return model


def strip_file(path: Path) -> None:
    """Rewrite the self-contained ONNX file at `path` without its build metadata."""
    import onnx

    model = onnx.load(str(path))
    onnx.save(strip_build_metadata(model), str(path))
