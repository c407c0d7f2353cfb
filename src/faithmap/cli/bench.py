"""``faithmap bench`` and ``faithmap report``: the benchmark and its HTML report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from faithmap.bench import (
    BenchConfig,
    Store,
    read_toml,
    run_bench,
)
from faithmap.bench.bam_suite import BAM_DATA
from faithmap.bench.collect import REPORT_NAME, write_run_report
from faithmap.bench.config import merge_params
from faithmap.bench.generation_suite import GENERATION_DATA
from faithmap.bench.grid_suite import GRID_DATA, bench_grid
from faithmap.bench.plan import plan
from faithmap.bench.roar_suite import SUITE_FIELDS as ROAR_FIELDS
from faithmap.bench.sources import data_source, model_source
from faithmap.bench.store import STORE_NAME
from faithmap.bench.suites import DEFAULT, SUITES, Suite, bench_findings, data_has_masks
from faithmap.cli.bench_bam import bench_bam
from faithmap.cli.bench_generation import bench_generation
from faithmap.cli.bench_roar import bench_roar
from faithmap.cli.bench_summary import print_summary
from faithmap.cli.common import (
    app,
    clean_errors,
    console,
    dotted_params,
    errors,
    say,
    split_names,
    writable_folder,
)
from faithmap.cli.declared import (
    ChannelsOption,
    DeviceOption,
    KeepAspectOption,
    MeanOption,
    OutputsOption,
    PadValueOption,
    ScaleOption,
    SizeOption,
    StdOption,
    ThreadsOption,
    declared_outputs,
    declared_preprocessing,
    set_threads,
)
from faithmap.cli.interrupted import interrupted
from faithmap.errors import InvalidParameterError


@app.command()
def bench(
    config: Annotated[
        Path | None, typer.Option(help="A TOML file of BenchConfig keys; flags override it.")
    ] = None,
    suite: Annotated[
        str,
        typer.Option(
            help="A named suite (default, full, robustness, detection, generation, grid, "
            "roar, bam): its models, methods, metrics and data, and its findings in the "
            "report. A --config and flags override it.",
            show_default=True,
        ),
    ] = DEFAULT.name,
    data: Annotated[
        str | None,
        typer.Option(
            help="Built-in data set (shapes), or a folder of images (labels from class "
            "sub-folders)."
        ),
    ] = None,
    masks: Annotated[
        Path | None,
        typer.Option(
            help="With a folder of images: a folder of ground-truth masks, one per image with "
            "the same file name stem."
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated models: built-in names, model files (TorchScript, state "
            "dict with --architecture, ONNX) or torchvision:/timm:/hf: names; default: all "
            "built-in."
        ),
    ] = None,
    architecture: Annotated[
        str | None,
        typer.Option(help="For a state-dict model file: its class, package.module:ClassName."),
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option(help="Allow pickled checkpoints (they can run code: trusted files only)."),
    ] = False,
    size: SizeOption = None,
    keep_aspect: KeepAspectOption = False,
    pad_value: PadValueOption = 0.0,
    mean: MeanOption = None,
    std: StdOption = None,
    scale: ScaleOption = 1.0,
    channels: ChannelsOption = "rgb",
    outputs: OutputsOption = "logits",
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods; default: all registered.")
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated metrics; default: the suite's ("
            f"{','.join(DEFAULT.metrics)}, and {','.join(DEFAULT.mask_metrics)} when the data "
            "has masks)."
        ),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(help=f"Images per (model, method); default: {DEFAULT.n_samples}."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of random methods and metrics.")] = None,
    data_seed: Annotated[int | None, typer.Option(help="Seed of the built-in images.")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="A method parameter method.key=value (repeatable), e.g. rise.n_masks=500.",
        ),
    ] = None,
    metric_param: Annotated[
        list[str] | None,
        typer.Option(
            "--metric-param",
            "-m",
            help="A metric parameter metric.key=value (repeatable), e.g. insertion.steps=16.",
        ),
    ] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Samples per task.")] = None,
    executor: Annotated[str | None, typer.Option(help="local or ray.")] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address; default: start a local cluster.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Local: worker processes (1: this process; default: one per core for a CPU "
            "run of at least two tasks per core). Ray: CPUs of a local cluster."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the store, the CSV/JSON and the report; default: "
            f"{BenchConfig.out}/ (the current directory's)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Rows per model call; default: the fastest, measured.")
    ] = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
    precision: Annotated[
        str | None,
        typer.Option(help="The forward pass's arithmetic: fp32, bf16 or fp16; default: fp32."),
    ] = None,
    memory_format: Annotated[
        str | None,
        typer.Option(
            help="The models' layout: contiguous or channels_last (NHWC weights and image "
            "batches); default: contiguous."
        ),
    ] = None,
    progress: Annotated[
        bool,
        typer.Option(
            help="Show a progress bar: tasks done (a task: one model, one method, up to "
            "--chunk-size images), and passes_s, the model's forward plus backward passes per "
            "second so far."
        ),
    ] = True,
    report: Annotated[bool, typer.Option(help="Write the HTML report at the end.")] = True,
) -> None:
    """Benchmark methods × models × metrics; resumes a stored run of the same configuration.

    Your own models and data: --models my.onnx,cnn --data photos/ --masks masks/; --size,
    --channels, --mean/--std, --scale and --outputs declare what your model files expect and
    return (the built-in models keep their own), and --size also brings the images to it.
    The console shows each metric's mean ± the half-width of its 95 % interval (Student t),
    as the report does.
    """
    with clean_errors():
        set_threads(threads)
        declared = {
            "architecture": architecture,
            "trust_pickle": trust_pickle,
            "outputs": declared_outputs(outputs),
            "preprocessing": declared_preprocessing(
                size,
                keep_aspect=keep_aspect,
                pad_value=pad_value,
                mean=mean,
                std=std,
                scale=scale,
                channels=channels,
            ),
        }
        chosen = _suite(suite)
        if chosen.data == GENERATION_DATA:
            unused: dict[str, object] = {"--config": config, "--data": data, "--masks": masks}
            unused |= {"--models": models}
            unused |= {"--architecture": architecture, "--executor": executor}
            unused |= {"--address": address, "--workers": workers, "--device": device}
            unused |= {"--precision": precision, "--size": size, "--mean": mean, "--std": std}
            unused |= {"--memory-format": memory_format}
            bench_generation(
                methods=methods,
                metrics=metrics,
                samples=samples,
                seed=seed,
                data_seed=data_seed,
                param=param,
                metric_param=metric_param,
                chunk_size=chunk_size,
                batch_size=batch_size,
                out=out,
                progress=progress,
                report=report,
                unused=unused,
            )
            return
        if chosen.data == BAM_DATA:
            bam_off: dict[str, object] = {"--config": config, "--data": data, "--masks": masks}
            bam_off |= {"--models": models, "--metrics": metrics, "--param": param}
            bam_off |= {"--metric-param": metric_param, "--seed": seed}
            bam_off |= {"--executor": executor, "--device": device}
            bam_off |= {"--memory-format": memory_format}
            bam_off |= {"--chunk-size": chunk_size, "--batch-size": batch_size}
            bench_bam(
                methods=methods,
                samples=samples,
                data_seed=data_seed,
                out=out,
                progress=progress,
                unused=bam_off,
            )
            return
        if chosen.data == GRID_DATA:
            off: dict[str, object] = {"--config": config, "--data": data, "--masks": masks}
            off |= {"--models": models, "--metrics": metrics, "--param": param}
            off |= {"--metric-param": metric_param, "--data-seed": data_seed}
            off |= {"--executor": executor, "--device": device, "--memory-format": memory_format}
            bench_grid(
                samples=samples,
                methods=split_names(methods, "methods"),
                seed=seed,
                out=out,
                say=say,
                unused=off,
                command=shlex.join(["faithmap", *sys.argv[1:]]),
            )
            return
        if chosen.name == ROAR_FIELDS["name"]:
            skip: dict[str, object] = {"--data": data, "--masks": masks, "--models": models}
            skip |= {"--metrics": metrics, "--param": param, "--metric-param": metric_param}
            skip |= {"--seed": seed, "--executor": executor, "--device": device}
            skip |= {"--memory-format": memory_format}
            skip |= {"--chunk-size": chunk_size, "--batch-size": batch_size}
            bench_roar(
                config=config,
                methods=methods,
                samples=samples,
                data_seed=data_seed,
                out=out,
                progress=progress,
                unused=skip,
            )
            return
        given = read_toml(config) if config is not None else {}
        method_params = dotted_params(param, "--param", "method", "rise.n_masks=500")
        metric_params = dotted_params(
            metric_param, "--metric-param", "metric", "insertion.steps=16"
        )
        names = split_names(models, "models")
        if data is not None and data != "shapes":
            data_options: dict[str, Any] = {
                "masks": None if masks is None else str(masks),
                "size": size,
            }
            if keep_aspect:
                data_options["keep_aspect"] = True
            data_value: Any = data_source(data, **data_options)
        elif masks is not None:
            raise InvalidParameterError("--masks goes with --data FOLDER (a folder of images).")
        else:
            data_value = data
        flags = {
            "data": data_value,
            "models": None if names is None else [model_source(n, **declared) for n in names],
            "methods": split_names(methods, "methods"),
            "metrics": split_names(metrics, "metrics"),
            "n_samples": samples,
            "seed": seed,
            "data_seed": data_seed,
            "chunk_size": chunk_size,
            "executor": executor,
            "address": address,
            "workers": workers,
            "out": out,
            "batch_size": batch_size,
            "device": device,
            "precision": precision,
            "memory_format": memory_format,
        }
        flags = {key: value for key, value in flags.items() if value is not None}
        masked = data_has_masks(data_source(flags.get("data", given.get("data", "shapes"))))
        values: dict[str, Any] = chosen.bench_options(masks=masked)
        values.update(given)
        values.update(flags)
        values["method_params"] = merge_params(values["method_params"], method_params)
        values["metric_params"] = merge_params(values.get("metric_params", {}), metric_params)
        configured = BenchConfig(**values)
        writable_folder(configured.out)
        if progress:
            errors.print(
                f"{len(plan(configured))} task(s) (a task: one model, one method, up to "
                f"{configured.chunk_size} images, scored by every metric); passes_s in the bar: "
                "model passes (forward + backward) per second.",
                highlight=False,
                soft_wrap=True,
            )
        command = shlex.join(["faithmap", *sys.argv[1:]])
        concludes = chosen.conclude is not None
        try:
            rows = run_bench(
                configured, progress=progress, report=report and not concludes, command=command
            )
        except KeyboardInterrupt:
            raise interrupted(configured.out, configured.hash, len(plan(configured))) from None
        print_summary(rows, configured.metrics, configured.n_samples)
        folder = configured.out
        stated: list[str] = []
        if concludes:
            stated = bench_findings(chosen, rows, configured.n_samples)
            console.print(f"\n{chosen.name} suite findings:", highlight=False)
            for line in stated:
                console.print(f"- {line}", highlight=False, soft_wrap=True)
        with Store(folder) as store:
            run = store.run(configured.hash)
            skipped = store.skipped(run)
            if concludes:
                store.set_findings(run, stated)
                if report:
                    write_run_report(store, run, folder)
        reasons = {task.rsplit("/", 1)[0]: why for task, why in skipped.items()}
        for pair, why in reasons.items():
            console.print(f"skipped {pair}: {why}", highlight=False, soft_wrap=True)
        written = [folder / STORE_NAME, folder / "results.csv", folder / "results.json"]
        console.print("wrote " + ", ".join(map(str, written)), highlight=False, soft_wrap=True)
        if report and (folder / REPORT_NAME).is_file():
            _point_to(folder / REPORT_NAME)


def _point_to(page: Path) -> None:
    """Where the report is, as an absolute path to open in a browser."""
    say(f"report: {page.resolve()} (open it in a browser)")


def _suite(name: str) -> Suite:
    """The named suite, or a clear error listing the valid names."""
    if name not in SUITES:
        raise InvalidParameterError(
            f"Unknown suite {name!r}. Valid names are: {', '.join(sorted(SUITES))}."
        )
    return SUITES[name]


@app.command()
def report(
    store: Annotated[
        Path, typer.Argument(help="A benchmark's output folder or its bench.sqlite file.")
    ],
    run: Annotated[
        str | None, typer.Option(help="Run number or config hash (prefix); default: the latest.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for report.html; default: the store's folder.")
    ] = None,
) -> None:
    """Write (again) the HTML report of a stored benchmark run."""
    with clean_errors():
        path = store / STORE_NAME if store.is_dir() else store
        if not path.is_file():
            raise InvalidParameterError(
                f"No benchmark store at {str(store)!r}. Give the output folder of `faithmap "
                "bench` or its bench.sqlite file."
            )
        with Store(path) as opened:
            chosen = opened.run(run)
            page = write_run_report(opened, chosen, out or path.parent)
        if page is None:
            raise InvalidParameterError(
                f"Nothing to report for run {chosen.id} ({chosen.config_hash}): it has no rows yet."
            )
        _point_to(page)
