"""``hwsim simulate CLUSTER.yaml TRACE``: replay a trace on a deployment with the simulator."""

from __future__ import annotations

import click

from hwsim.cli.params import QuantityParam, SloParam, catalog_option, patch_option
from hwsim.units import Dim


@click.command("simulate")
@click.argument("cluster_file", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.argument("trace_file", metavar="TRACE", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="out", show_default=True,
              help="Folder for summary.json, requests.csv, timeseries.csv (each written atomically).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of every random draw.")
@click.option("--duration", type=QuantityParam(Dim.TIME), default=None,
              help="Stop the clock after this long (e.g. '10min'); unfinished requests are reported.")
@click.option("--max-requests", type=click.IntRange(min=1), default=None, help="Read at most this many requests.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Send the trace's requests from N closed-loop clients (each sends its next request when the "
                   "last finishes; timestamps ignored), as benchmark clients at a fixed concurrency do.")
@click.option("--slo", type=SloParam(), default=None, help="Goodput SLOs, e.g. 'ttft=2s,tpot=50ms'.")
@click.option("--router", type=click.Choice(["round-robin", "least-tokens", "prefix-affinity"]),
              default="round-robin", show_default=True, help="How requests are spread over replicas.")
@click.option("--requests-format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--interval", type=QuantityParam(Dim.TIME), default="1 s", show_default=True,
              help="Bucket width of timeseries.csv.")
@click.option("--plots", is_flag=True, help="Also draw PNGs (latency CDFs, throughput, KV, power, experts, links).")
@click.option("--timeline", is_flag=True, help="Also write timeline.json (Chrome/Perfetto trace of engine steps).")
@click.option("--power-cap", type=QuantityParam(Dim.POWER), default=None,
              help="Cap every device's power (e.g. '500 W'); compute-bound steps slow down when it binds.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@catalog_option
@patch_option
def simulate(cluster_file: str, trace_file: str, out_dir: str, seed: int, duration: float | None,
             max_requests: int | None, concurrency: int | None, slo: dict[str, float] | None, router: str, requests_format: str,
             interval: float, plots: bool, timeline: bool, power_cap: float | None, quiet: bool,
             catalog_dirs: tuple[str, ...], patch_files: tuple[str, ...]) -> None:
    """Simulate serving TRACE on the deployment of CLUSTER.yaml; write results to --out."""
    from hwsim import __version__
    from hwsim.io.scenario import file_sha256, load_scenario
    from hwsim.report.summary import summarize
    from hwsim.report.write import summary_text, write_outputs
    from hwsim.sim.routing import imbalance_sampler_factory
    from hwsim.sim.run import simulate as run
    from hwsim.workload.importers import detect_format, import_requests

    sc = load_scenario(cluster_file, catalog_dirs, patch_files)
    requests = import_requests(trace_file, detect_format(trace_file))
    progress = None if quiet else _progress_bar(duration)
    try:
        result = run(sc, requests, seed=seed, duration_s=duration, max_requests=max_requests, router=router,
                     progress=progress, imbalance_sampler_factory=imbalance_sampler_factory(sc), power_cap_w=power_cap,
                     concurrency=concurrency)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        raise
    finally:
        if progress is not None:
            progress.close()  # type: ignore[attr-defined]
    inputs = {**sc.input_hashes, trace_file: file_sha256(trace_file)}
    slo = slo or {}
    summary = summarize(result, slo_ttft_s=slo.get("ttft"), slo_tpot_s=slo.get("tpot"), inputs=inputs,
                        version=__version__)
    written = write_outputs(result, out_dir, summary_dict=summary, requests_format=requests_format,
                            interval_s=interval, plots=plots, timeline=timeline)
    click.echo(summary_text(summary))
    folder = out_dir.rstrip("/") or "/"
    click.echo(f"wrote {len(written)} files to {folder}/")


class _Progress:
    """A tqdm bar over simulated time (or requests read when no duration is given)."""

    def __init__(self, duration: float | None) -> None:
        from tqdm import tqdm

        self.duration = duration
        unit, total = ("s", duration) if duration else ("req", None)
        self.bar = tqdm(total=total, unit=unit, desc="simulating", leave=False, mininterval=0.5, disable=None)
        self.last = 0.0

    def __call__(self, now_s: float, requests: int) -> None:
        value = now_s if self.duration else float(requests)
        self.bar.update(value - self.last)
        self.last = value

    def close(self) -> None:
        self.bar.close()


def _progress_bar(duration: float | None) -> _Progress:
    return _Progress(duration)
