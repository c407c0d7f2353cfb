"""``faithmap explain``: an image, a folder of images, a CSV file of rows, or a text.

The input decides the path: no input explains a built-in sample; a folder explains every image
in it (unreadable files are reported and skipped); a ``.csv`` file explains every row; ``--text``
explains a sentence. ``--model`` is any specification :func:`faithmap.zoo.loaders.load_model`
reads (a built-in name, a TorchScript, state-dict or ONNX file, ``torchvision:``/``timm:``/
``hf:`` names), or, for CSV rows, a pickled scikit-learn estimator with ``--trust-pickle``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from faithmap.api import get_method
from faithmap.cli.common import (
    app,
    builtin_model_note,
    clean_errors,
    file_stem,
    parse_param,
    parse_target,
    say,
    writable_folder,
)
from faithmap.cli.declared import (
    ChannelsOption,
    DeviceOption,
    KeepAspectOption,
    MeanOption,
    MemoryFormatOption,
    OnnxInputOption,
    OutputsOption,
    PadValueOption,
    PrecisionOption,
    ScaleOption,
    SizeOption,
    StdOption,
    ThreadsOption,
    declared_outputs,
    declared_preprocessing,
    load_declared,
    onnx_inputs,
    placed,
    set_threads,
)
from faithmap.cli.explain_rows import explain_rows
from faithmap.cli.generate import GPT_MODEL, run_generation, wants_generation
from faithmap.cli.image_batches import explain_folder, save_all, unique_stems
from faithmap.cli.text import TEXT_MODEL, explain_text_input
from faithmap.core.detection import pick_boxes
from faithmap.core.explanation import Explanation
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.data import (
    CLASS_NAMES,
    make_shapes,
    make_shapes_scenes,
    read_image,
)
from faithmap.errors import InvalidParameterError
from faithmap.metrics import deletion, insertion
from faithmap.viz import save_overlay
from faithmap.zoo import BUILTIN_MODELS, DETECTOR_MODELS, ZOO_MODELS
from faithmap.zoo.detector import ShapesDetector


def _class_name(model: str, index: int) -> str:
    return CLASS_NAMES[index] if model in ZOO_MODELS else str(index)


def _explain_images(
    x: torch.Tensor,
    stems: list[str],
    masks: torch.Tensor | None,
    *,
    configured: Method,
    model_spec: str,
    wrapped: Model,
    target: int | None,
    objects: dict[str, Any] | None,
    out: Path,
) -> Explanation:
    """Explain a batch of images in one call; one overlay and one line of AUCs per image.

    ``objects`` (:func:`_objects`) explains one detection per image, its box drawn.
    """
    picked = None if objects is None else pick_boxes(wrapped, x, **objects)
    boxes = None if picked is None else [choice.target for choice in picked]
    explanation = configured.explain(wrapped, x, target if boxes is None else boxes)
    method = configured.name
    predicted = wrapped.predict(x).tolist() if picked is None else []  # a detector has none
    readout: dict[str, Any] = {} if picked is None else {"activation": "logits"}
    scores = (
        insertion(wrapped, x, explanation, **readout),
        deletion(wrapped, x, explanation, **readout),
    )
    out.mkdir(parents=True, exist_ok=True)
    name = file_stem(Path(model_spec).stem if Path(model_spec).suffix else model_spec)
    for i, stem in enumerate(stems):
        target_of = explanation.target
        label = "-" if target_of is None else _class_name(model_spec, int(target_of[i]))
        if picked is not None:
            box, label = picked[i].target.box, _class_name(model_spec, picked[i].target.label)
            what = f"explained {label} in box {', '.join(f'{v:.1f}' for v in box)} (box score "
            what += f"{picked[i].score:.4f})"
        else:
            what = f"predicted {_class_name(model_spec, predicted[i])}, explained {label}"
        png = save_overlay(
            out / f"{stem}-{name}-{method}.png",
            x[i],
            explanation.attributions[i],
            mask=None if masks is None else masks[i],
            box=None if picked is None else picked[i].target.box,
            title=f"{method} · {name} · {label}",
            ranked=explanation.ranking is not None,
        )
        aucs = ", ".join(f"{r.metric} {float(r.values[i]):.4f}" for r in scores)
        say(f"{stem}: {what}; {aucs}; wrote {png}")
    return explanation


def _detector_note(model: str, size: tuple[int, int] | None, keep_aspect: bool) -> str:
    """What the built-in detector can say about a user's own image: it finds only the synthetic
    shapes of the scenes it was trained on, at their scale (printed once)."""
    side = ShapesDetector.input_size
    height, width = size or (side, side)
    resized = (
        f"fitted into {height}x{width} and padded"
        if keep_aspect
        else f"resized to {height}x{width} without keeping its aspect ratio"
    )
    return (
        f"note: the built-in detector {model!r} finds only the {len(CLASS_NAMES)} synthetic "
        f"shapes ({', '.join(CLASS_NAMES)}) of the {side}x{side} scenes it was trained on, 14-29 "
        f"pixels wide, whatever the image shows; each image is {resized}. For your own "
        "detector, give --model (a TorchScript, state-dict or ONNX file, or hf:NAME)."
    )


def _objects(
    box: str | None, label: int | None, detection: int | None, objectness: bool
) -> dict[str, Any] | None:
    """:func:`pick_boxes`' keywords from --box, --label, --detection and --objectness; ``None``
    when none is given (the model is a classifier)."""
    if box is None and label is None and detection is None and not objectness:
        return None
    try:
        corners = None if box is None else [float(v) for v in box.split(",")]
    except ValueError:
        corners = []
    if corners is not None and len(corners) != 4:
        raise InvalidParameterError(
            f"--box must be four numbers x0,y0,x1,y1 in pixels, e.g. 8,8,40,40. Got {box!r}."
        )
    return {"box": corners, "label": label, "detection": detection, "objectness": objectness}


@app.command(name="explain")
def explain_command(
    ctx: typer.Context,
    source: Annotated[
        Path | None,
        typer.Argument(
            help="An image, a folder of images or a CSV file of rows; a built-in sample when "
            "left out."
        ),
    ] = None,
    text: Annotated[
        str | None, typer.Option(help="Explain this text with a text classifier instead.")
    ] = None,
    generate: Annotated[
        str | None,
        typer.Option(
            help="Continue this prompt with a language model and explain each generated token "
            "by the prompt's features; --out FILE.html writes the heatmap."
        ),
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="With --generate: tokens to generate (default 8).")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="With --generate: prompt features, tokens, words (default) or sentences."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="With --generate: seed of the method's random draws (kernel_shap, lime)."
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="A name from `faithmap methods`; default: integrated_gradients for images and "
            "text, kernel_shap for rows, feature_ablation for --generate."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=f"A built-in name ({', '.join(BUILTIN_MODELS)}; {TEXT_MODEL} for text), a "
            "TorchScript, state-dict or ONNX file, a Hugging Face directory, or "
            "torchvision:NAME, timm:NAME, hf:NAME. Default: cnn (images), word_cnn (text), "
            f"{GPT_MODEL} (--generate, which takes hf:DIR too)."
        ),
    ] = None,
    architecture: Annotated[
        str | None,
        typer.Option(help="For a state-dict file: the model class, package.module:ClassName."),
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option(help="Allow pickled checkpoints (they can run code: trusted files only)."),
    ] = False,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Class to explain; default: predicted.")
    ] = None,
    sample: Annotated[
        int, typer.Option(help="Which built-in sample (its seed) when no input is given.")
    ] = 0,
    size: SizeOption = None,
    keep_aspect: KeepAspectOption = False,
    pad_value: PadValueOption = 0.0,
    mean: MeanOption = None,
    std: StdOption = None,
    scale: ScaleOption = 1.0,
    channels: ChannelsOption = "rgb",
    outputs: OutputsOption = "logits",
    onnx_input: OnnxInputOption = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = "fp32",
    memory_format: MemoryFormatOption = "contiguous",
    chunk_size: Annotated[
        int,
        typer.Option(help="Images of a folder explained per call: memory is bounded by the chunk."),
    ] = 64,
    background: Annotated[
        Path | None, typer.Option(help="For CSV rows: a CSV of background rows (baselines).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A method parameter key=value (repeatable)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for what is written.")] = Path("faithmap-out"),
    batch_size: Annotated[
        int | None, typer.Option(help="Rows per model call; default: the fastest, measured.")
    ] = None,
    box: Annotated[
        str | None,
        typer.Option(help="A detector's object to explain: its box x0,y0,x1,y1 in pixels."),
    ] = None,
    label: Annotated[int | None, typer.Option(help="The class of the --box object.")] = None,
    detection: Annotated[
        int | None,
        typer.Option(help="Explain the detector's I-th prediction (0: its highest-scoring box)."),
    ] = None,
    objectness: Annotated[
        bool, typer.Option(help="The detector's raw (B, 4 + 1 + C, A) output has objectness.")
    ] = False,
) -> None:
    """Explain an image, a folder of images, a CSV file of rows or a text; save the results.

    Declare your model once: --size HxW (and --keep-aspect), --channels, --mean/--std or
    --scale, and --outputs; faithmap applies them inside every model call, so attributions
    stay on your images' pixels and metrics read the model's scores as it returns them.
    """
    with clean_errors():
        set_threads(threads)
        if wants_generation(ctx):
            run_generation(ctx)
            return
        writable_folder(out)
        if chunk_size < 1:
            raise InvalidParameterError(f"--chunk-size must be at least 1. Got {chunk_size}.")
        target_class = parse_target(target)
        params = dict(parse_param(p) for p in param or [])
        objects = _objects(box, label, detection, objectness)
        if objects is not None and (
            target is not None or text or str(source).lower().endswith(".csv")
        ):
            raise InvalidParameterError(
                "--box, --label and --detection choose a detector's object in images; leave "
                "out --target, --text and CSV rows."
            )
        if (text is not None or str(source).lower().endswith(".csv")) and (
            device not in (None, "cpu") or precision != "fp32" or memory_format != "contiguous"
        ):
            raise InvalidParameterError(
                "--device, --precision and --memory-format apply to image models; text and CSV "
                "rows run on the CPU in fp32, contiguous. Leave them out."
            )
        if text is not None:
            if source is not None:
                raise InvalidParameterError(
                    "Give either an input file or folder, or --text, not both."
                )
            explain_text_input(
                text,
                method=method,
                params=params,
                model_spec=model,
                target=target_class,
                batch_size=batch_size,
                out=out,
            )
            return
        if source is not None and source.suffix.lower() == ".csv":
            explain_rows(
                source,
                method=method,
                params=params,
                model_spec=model,
                architecture=architecture,
                trust_pickle=trust_pickle,
                background=background,
                target=target_class,
                batch_size=batch_size,
                out=out,
            )
            return
        spec = model or "cnn"
        detector = spec in DETECTOR_MODELS
        if source is None and detector and objects is None:  # the sample scene's top detection
            objects = {"box": None, "label": None, "detection": 0, "objectness": False}
        elif detector and objects is None:
            raise InvalidParameterError(
                f"The detector {spec!r} has no predicted class: choose the object to explain "
                "with --detection I (0: its highest-scoring box) or --box x0,y0,x1,y1 --label K."
            )
        configured = get_method(method or "integrated_gradients", **params)
        if (
            objects is not None
            and "activation" in configured.params()
            and "activation" not in params
        ):
            configured = get_method(configured.name, **params, activation="logits")  # raw boxes
        builtin = spec in ZOO_MODELS
        side = ShapesDetector.input_size if detector else 64  # the size each was trained at
        preprocessing = declared_preprocessing(
            size if size is not None or not builtin else str(side),
            keep_aspect=keep_aspect,
            pad_value=pad_value,
            mean=mean,
            std=std,
            scale=scale,
            channels=channels,
        )
        wrapped = load_declared(
            spec,
            architecture,
            trust_pickle,
            batch_size,
            outputs=declared_outputs(outputs),
            preprocessing=preprocessing,
            extra_inputs=onnx_inputs(onnx_input) or None,
        )
        wrapped = placed(wrapped, device, precision, memory_format)
        explain = partial(
            _explain_images,
            configured=configured,
            model_spec=spec,
            wrapped=wrapped,
            target=target_class,
            objects=objects,
            out=out,
        )
        if source is None and detector:
            scenes = make_shapes_scenes(1, seed=sample)
            x, stems = preprocessing.fit(scenes.images), [f"sample{sample}"]
            masks = preprocessing.fit(scenes.masks[0].amax(0, keepdim=True)[None].float()) > 0.5
            names = ", ".join(CLASS_NAMES[int(k)] for k in scenes.labels[0])
            say(f"sample{sample}: a scene of {names} (outlined)")
            save_all(explain(x, stems, masks), stems, spec, out)
        elif source is None:
            shapes = make_shapes(1, seed=sample)
            x, stems = preprocessing.fit(shapes.images), [f"sample{sample}"]
            masks = preprocessing.fit(shapes.masks.float()) > 0.5
            say(f"sample{sample}: true class {CLASS_NAMES[int(shapes.labels[0])]}")
            save_all(explain(x, stems, masks), stems, spec, out)
        elif source.is_dir():
            explain_folder(source, preprocessing, chunk_size, explain, spec, out)
        else:
            stems = unique_stems([source])
            x = read_image(source, preprocessing)
            save_all(explain(x, stems, None), stems, spec, out)
        if builtin and source is not None:  # once, after the images were read and explained
            note = _detector_note if detector else builtin_model_note
            say(note(spec, preprocessing.size, preprocessing.keep_aspect))
