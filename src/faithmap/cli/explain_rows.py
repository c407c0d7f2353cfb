"""Explaining the rows of a CSV file for ``faithmap explain``: a tabular model (a torch or ONNX
file, or a pickled scikit-learn estimator), every row explained, the top columns printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faithmap.cli.common import say
from faithmap.cli.declared import load_declared
from faithmap.cli.image_batches import print_cost
from faithmap.errors import InvalidParameterError


def explain_rows(
    path: Path,
    *,
    method: str | None,
    params: dict[str, Any],
    model_spec: str | None,
    architecture: str | None,
    trust_pickle: bool,
    background: Path | None,
    target: int | None,
    batch_size: int | None,
    out: Path,
) -> None:
    """Explain every row of a CSV file with a tabular model; print the top columns."""
    from faithmap.tabular import explain_csv, load_estimator

    if model_spec is None:
        raise InvalidParameterError(
            "Explaining a CSV file needs --model: a torch model file (with --architecture for a "
            "state dict), an ONNX file, or a pickled scikit-learn estimator (.pkl, .joblib) "
            "with --trust-pickle."
        )
    if Path(model_spec).suffix.lower() in (".pkl", ".pickle", ".joblib"):
        model: Any = load_estimator(Path(model_spec), trust_pickle=trust_pickle)
    else:
        model = load_declared(model_spec, architecture, trust_pickle, batch_size)
    result = explain_csv(
        model,
        path,
        method=method or "kernel_shap",
        target=target,
        background=background,
        batch_size=batch_size,
        **params,
    )
    out.mkdir(parents=True, exist_ok=True)
    table = out / f"{path.stem}-{result.explanation.method}.csv"
    result.to_frame().to_csv(table, index=False)
    raw = result.explanation.save(out / f"{path.stem}-{result.explanation.method}.safetensors")
    say(result.summary())
    print_cost(result.explanation.cost)
    say(f"wrote {table}\nwrote {raw}")
