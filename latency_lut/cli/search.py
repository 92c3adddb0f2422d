"""fbnet-lut search"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from latency_lut.cli._common import (
    COUNT,
    RESOLUTION,
    THREADS,
    WIDTH,
    ClickProgress,
    FiniteFloat,
    default_store,
    echo_json,
    store_option,
    table,
)
from latency_lut.cli.validate import _OPTIONAL_PATH
from latency_lut.cli.validate import _pct as pct

EPOCHS = click.IntRange(1, 10_000)  # epochs, steps and rounds: at least one, and not a typo's worth of hours


def _weights(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers, e.g. 0,1,4") from None


@click.command()
@click.option("--space", default="fbnet", show_default=True, help="Search space (name or .yaml file).")
@click.option("--resolution", default=32, show_default=True, type=RESOLUTION, help="Input resolution of the network.")
@click.option("--width", default=0.25, show_default=True, type=WIDTH, help="Channel width multiplier.")
@click.option("--device", "-d", default="local", show_default=True,
              help="Device the LUT is (or is to be) built on; the searched models are measured there.")
@click.option("--runtime", "-r", default=None, help="Runtime of a LUT built here [default: the device's].")
@click.option("--threads", "-t", default=None, type=THREADS, help="Runtime threads of a LUT built here.")
@click.option("--lut", "lut_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="LUT of the space on the device; built (and written there) when the file does not exist "
                   "[default: profiles/DEVICE-RUNTIME-RESOLUTION[-wWIDTH].json].")
@store_option
@click.option("--weights", "latency_weights", default="0,1,4", show_default=True, callback=_weights,
              help="Latency weights, one search each (beta of the FBNet loss, lambda of the additive one).")
@click.option("--loss", type=click.Choice(["fbnet", "additive"]), default="fbnet", show_default=True,
              help="fbnet: CE * 0.2 * log(LAT)^w; additive (ProxylessNAS): CE + w * (LAT - ref) / ref.")
@click.option("--mode", type=click.Choice(["soft", "path"]), default="soft", show_default=True,
              help="soft: FBNet's Gumbel-softmax sum of all candidates; path: only the sampled one runs.")
@click.option("--warmup-epochs", default=3, show_default=True, type=COUNT,
              help="Weight-only search epochs, shared by all latency weights.")
@click.option("--search-epochs", default=4, show_default=True, type=EPOCHS, help="Search epochs per latency weight.")
@click.option("--steps", default=10, show_default=True, type=EPOCHS, help="Batches per search epoch.")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(1, 4096), help="Search batch size.")
@click.option("--train-epochs", default=15, show_default=True, type=EPOCHS,
              help="Epochs of training each derived architecture from scratch.")
@click.option("--train-lr", default=0.1, show_default=True, type=FiniteFloat(0, 10, min_open=True),
              help="Peak one-cycle learning rate.")
@click.option("--no-augment", is_flag=True, help="Train without random affine augmentation.")
@click.option("--rounds", default=5, show_default=True, type=EPOCHS,
              help="Interleaved measurement rounds; a model's latency is the median of its round medians.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1))
@click.option("--torch-threads", default=1, show_default=True, type=THREADS,
              help="Threads of the training (1 is fastest for these small models on a shared host).")
@click.option("--plot", "plot_path", help="Write accuracy against latency as PNG [default path: LUT-search.png].",
              **_OPTIONAL_PATH)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the report (rows, search histories, summary) as JSON.")
def search(space: str, resolution: int, width: float, device: str, runtime: str | None, threads: int | None,
           lut_path: Path | None, store: Path | None, latency_weights: tuple[float, ...], loss: str, mode: str,
           warmup_epochs: int, search_epochs: int, steps: int, batch: int, train_epochs: int, train_lr: float,
           no_augment: bool, rounds: int, seed: int, torch_threads: int, plot_path: Path | None, quiet: bool,
           as_json: bool) -> None:
    """Search, then train, export and measure what the search finds.

    For each latency weight, an FBNet DNAS on the LUT derives an architecture (on scikit-learn's digits,
    upsampled to the space's resolution). Each derived architecture is trained from scratch and scored on a
    held-out test split, exported for the LUT's runtime and measured end to end on the LUT's device (rounds go
    into the store), and its LUT prediction is set against the measurement.

    \b
    Examples:
      fbnet-lut search                                   # FBNet at 32 px, width 0.25, on this CPU
      fbnet-lut search --weights 0,2,8 --plot --json
      fbnet-lut search --lut profiles/local-onnxruntime-32-w0.25.json --loss additive --weights 0,0.5,2
    """
    import torch

    from latency_lut.backends import create_backend
    from latency_lut.build import build_lut
    from latency_lut.devices import get_device
    from latency_lut.lut import load
    from latency_lut.measure import Protocol
    from latency_lut.outputs import check_outputs
    from latency_lut.paths import default_lut_path
    from latency_lut.predict import check_space
    from latency_lut.search import SearchConfig, closed_loop, write_plot
    from latency_lut.spaces import get_space
    from latency_lut.store import Store

    cfg = SearchConfig(weights=latency_weights, loss=loss, mode=mode, warmup_epochs=warmup_epochs,
                       search_epochs=search_epochs, steps=steps, batch=batch, train_epochs=train_epochs,
                       train_lr=train_lr, augment=not no_augment, rounds=rounds, seed=seed)
    dev = get_device(device)
    sp = get_space(space, resolution, width)
    path = lut_path or default_lut_path(dev.name, runtime or dev.runtime, sp.id)
    lut = load(path) if path.exists() else None
    if lut is not None:
        check_space(lut, sp)
    plot_out = path.with_name(f"{path.stem}-search.png") if plot_path == Path("-") else plot_path
    # Before any work: neither output may be the store, the other output, or a file that cannot be written.
    check_outputs({"--lut": None if lut is not None else path, "--plot": plot_out}, store=store or default_store())
    torch.set_num_threads(torch_threads)
    load_before = os.getloadavg()
    progress = ClickProgress(quiet or as_json)
    with Store(store or default_store()) as st:
        t0 = time.perf_counter()
        if lut is None:  # build it on the device first: measured ops are reused from the store
            backend = create_backend(dev, runtime, threads=threads)
            try:
                lut = build_lut(sp, dev, backend, st, Protocol(), progress=progress).lut
            finally:
                backend.close()
            lut.save(path)
        lut_seconds = time.perf_counter() - t0
        backend = create_backend(dev, lut.header["runtime"], threads=int(lut.header["threads"]))
        try:
            rep = closed_loop(lut, sp, dev, backend, cfg, store=st, progress=progress)
        finally:
            backend.close()
    rep.summary["lut"] = str(path)
    rep.summary["seconds"].update(lut_build=lut_seconds, total=time.perf_counter() - t0)
    rep.summary["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    rep.summary["cpu_count"] = os.cpu_count()
    if plot_out:
        write_plot(rep, plot_out, f"{lut.header['device']} {lut.header['runtime']} {sp.id}")
        rep.summary["plot"] = str(plot_out)
    if as_json:
        echo_json(rep.to_dict())
        return
    rows = [[r.weight, r.predicted_ms, r.measured_ms or "", pct(r.error),
             "" if r.noise is None else f"{100 * r.noise:.1f}%", r.test_acc, r.flops / 1e6,
             " ".join(r.choices) if r.status == "ok" else r.status[:60]] for r in rep.rows]
    click.echo(table(rows, ["latency weight", "predicted ms", "measured ms", "error", "noise", "test acc", "MMACs",
                            "architecture"]))
    s = rep.summary
    secs = s["seconds"]
    click.echo(f"\n{sp.id} on {s['device']} / {s['runtime']} ({s['threads']} thread(s)), {cfg.loss} loss; "
               f"LUT build {secs['lut_build']:.0f} s, search {secs['search']:.0f} s, training {secs['train']:.0f} s, "
               f"measurement {secs['measure']:.0f} s, total {secs['total']:.0f} s; load average {load_before[0]:.1f} "
               f"-> {os.getloadavg()[0]:.1f}")
    if not s["latency_falls"]:
        click.echo("note: the predicted latency does not fall monotonically with the latency weight", err=True)
    for r in rep.rows:
        if r.status != "ok":
            click.echo(f"failed: weight {r.weight:g}: {r.status}", err=True)
    if plot_out:
        click.echo(f"plot: {plot_out}")
