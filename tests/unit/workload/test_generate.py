"""Synthetic traces: determinism, streaming, and the statistics each generator promises."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from hwsim.errors import SpecError
from hwsim.workload.generate import (
    ARRIVALS,
    DiurnalArrivals,
    EmpiricalLengths,
    GammaArrivals,
    LognormalLengths,
    OfflineArrivals,
    PoissonArrivals,
    generate_requests,
    make_rng,
)

LENGTHS = LognormalLengths(input_median=1024, input_sigma=1.0, output_median=128, output_sigma=0.8)


def _times(process: object, n: int, seed: int = 0) -> np.ndarray:
    requests = generate_requests(process, LENGTHS, seed=seed, count=n)  # type: ignore[arg-type]
    return np.array([r.arrival_s for r in requests])


def _cv(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.mean(x))


# ---------------------------------------------------------------- determinism and streaming


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    a = list(generate_requests(PoissonArrivals(rate_per_s=5), LENGTHS, seed=7, count=500))
    b = list(generate_requests(PoissonArrivals(rate_per_s=5), LENGTHS, seed=7, count=500))
    c = list(generate_requests(PoissonArrivals(rate_per_s=5), LENGTHS, seed=8, count=500))
    assert a == b
    assert a != c


def test_seed_and_rng_give_the_same_stream() -> None:
    by_seed = list(generate_requests(PoissonArrivals(rate_per_s=5), LENGTHS, seed=3, count=50))
    by_rng = list(
        generate_requests(PoissonArrivals(rate_per_s=5), LENGTHS, rng=make_rng(3), count=50)
    )
    assert by_seed == by_rng


@pytest.mark.parametrize(
    "process",
    [
        PoissonArrivals(rate_per_s=5),
        GammaArrivals(rate_per_s=5, cv=2),
        DiurnalArrivals(rate_per_s=5, period_s=60),
    ],
)
def test_shorter_runs_are_prefixes_of_longer_ones(process: object) -> None:
    long = list(generate_requests(process, LENGTHS, seed=1, count=10_000, chunk=1000))  # type: ignore[arg-type]
    short = list(generate_requests(process, LENGTHS, seed=1, count=2_345, chunk=1000))  # type: ignore[arg-type]
    timed = list(generate_requests(process, LENGTHS, seed=1, duration_s=100.0, chunk=1000))  # type: ignore[arg-type]
    assert short == long[:2_345]
    assert timed == [r for r in long if r.arrival_s < 100.0]
    assert [r.request_id for r in long] == list(range(10_000))


def test_length_model_does_not_move_arrivals() -> None:
    other = LognormalLengths(input_median=10, input_sigma=0.1, output_median=5, output_sigma=0.1)
    a = generate_requests(GammaArrivals(rate_per_s=3, cv=3), LENGTHS, seed=0, count=300)
    b = generate_requests(GammaArrivals(rate_per_s=3, cv=3), other, seed=0, count=300)
    assert [r.arrival_s for r in a] == [r.arrival_s for r in b]


def test_without_limits_the_stream_is_endless_and_lazy() -> None:
    stream = generate_requests(PoissonArrivals(rate_per_s=1000), LENGTHS, seed=0, chunk=512)
    requests = list(islice(stream, 5_000))
    assert len(requests) == 5_000
    times = [r.arrival_s for r in requests]
    assert times == sorted(times)


def test_times_are_rounded_to_microseconds() -> None:
    for r in generate_requests(PoissonArrivals(rate_per_s=50), LENGTHS, seed=0, count=200):
        assert r.arrival_s == round(r.arrival_s, 6)


def test_tenant_and_zero_count() -> None:
    assert list(generate_requests(PoissonArrivals(rate_per_s=1), LENGTHS, seed=0, count=0)) == []
    r = next(
        generate_requests(PoissonArrivals(rate_per_s=1), LENGTHS, seed=0, count=1, tenant="bench")
    )
    assert r.tenant == "bench"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        generate_requests(PoissonArrivals(rate_per_s=1), LENGTHS, count=1)
    with pytest.raises(ValueError, match="exactly one"):
        generate_requests(PoissonArrivals(rate_per_s=1), LENGTHS, seed=0, rng=make_rng(0), count=1)
    with pytest.raises(ValueError, match="bad limits"):
        generate_requests(PoissonArrivals(rate_per_s=1), LENGTHS, seed=0, count=-1)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: PoissonArrivals(rate_per_s=0), "rate_per_s"),
        (lambda: GammaArrivals(rate_per_s=1, cv=0), "cv"),
        (lambda: DiurnalArrivals(rate_per_s=1, peak_to_trough=0.5), "peak_to_trough"),
        (lambda: DiurnalArrivals(rate_per_s=1, period_s=float("inf")), "period_s"),
        (
            lambda: LognormalLengths(
                input_median=0, input_sigma=1, output_median=1, output_sigma=1
            ),
            "input_median",
        ),
        (
            lambda: LognormalLengths(
                input_median=1, input_sigma=-1, output_median=1, output_sigma=1
            ),
            "input_sigma",
        ),
    ],
)
def test_models_validate_their_parameters(factory: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()  # type: ignore[operator]


def test_registry_of_arrival_processes() -> None:
    assert ARRIVALS.names() == ["diurnal", "gamma", "offline", "poisson"]
    with pytest.raises(SpecError, match="did you mean 'poisson'"):
        ARRIVALS.get("poison")


# ---------------------------------------------------------------- statistics


def test_poisson_rate_and_cv() -> None:
    times = _times(PoissonArrivals(rate_per_s=5.0), 20_000)
    assert (len(times) - 1) / (times[-1] - times[0]) == pytest.approx(5.0, rel=0.03)
    assert _cv(np.diff(times)) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("cv", [0.5, 2.0, 3.0])
def test_gamma_cv_and_rate(cv: float) -> None:
    times = _times(GammaArrivals(rate_per_s=5.0, cv=cv), 20_000)
    gaps = np.diff(times)
    assert _cv(gaps) == pytest.approx(cv, rel=0.10)
    assert 1.0 / gaps.mean() == pytest.approx(5.0, rel=0.10)


def test_diurnal_mean_rate_and_peak_to_trough() -> None:
    process = DiurnalArrivals(rate_per_s=50.0, period_s=100.0, peak_to_trough=3.0)
    stream = generate_requests(process, LENGTHS, seed=0, duration_s=1000.0)
    times = np.array([r.arrival_s for r in stream])
    assert len(times) / 1000.0 == pytest.approx(50.0, rel=0.03)
    phase = np.mod(times, 100.0)
    at_peak = np.count_nonzero(np.abs(phase - 50.0) < 5.0)  # the default peak is half a period in
    at_trough = np.count_nonzero((phase < 5.0) | (phase > 95.0))
    # averaging cos over +-5 s of a 100 s period gives a ratio of 2.94 instead of 3
    assert at_peak / at_trough == pytest.approx(2.94, rel=0.10)
    assert process.rate_at(50.0) / process.rate_at(0.0) == pytest.approx(3.0)


def test_diurnal_peak_can_move() -> None:
    process = DiurnalArrivals(rate_per_s=2.0, period_s=10.0, peak_to_trough=5.0, peak_at_s=0.0)
    assert process.rate_at(0.0) == pytest.approx(2.0 * (1 + 4 / 6))
    assert process.rate_at(5.0) == pytest.approx(2.0 * (1 - 4 / 6))


def test_lognormal_medians_and_clipping() -> None:
    model = LognormalLengths(
        input_median=1024,
        input_sigma=1.0,
        output_median=128,
        output_sigma=1.5,
        max_input_tokens=8192,
        max_output_tokens=2048,
    )
    inputs, outputs = model.sample(make_rng(0), 20_000)
    assert np.median(inputs) == pytest.approx(1024, rel=0.04)
    assert np.median(outputs) == pytest.approx(128, rel=0.05)
    assert inputs.min() >= 1
    assert outputs.min() >= 1
    assert inputs.max() == 8192
    assert outputs.max() == 2048


def test_zero_sigma_gives_fixed_lengths() -> None:
    model = LognormalLengths(input_median=1000, input_sigma=0, output_median=100, output_sigma=0)
    inputs, outputs = model.sample(make_rng(0), 100)
    assert set(inputs.tolist()) == {1000}
    assert set(outputs.tolist()) == {100}


# ---------------------------------------------------------------- empirical lengths


def test_empirical_lengths_are_drawn_jointly(tmp_path: Path) -> None:
    path = tmp_path / "lengths.csv"
    path.write_text(
        "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n10,1,11,10\n20,2,22,10\n300,3,303,100\n"
    )
    model = EmpiricalLengths.from_file(path)
    inputs, outputs = model.sample(make_rng(0), 3_000)
    assert {(int(a), int(b)) for a, b in zip(inputs, outputs, strict=True)} == {
        (10, 1),
        (20, 2),
        (300, 3),
    }
    assert np.mean(inputs == 300) == pytest.approx(1 / 3, abs=0.04)


def test_empirical_lengths_from_a_trace(traces_dir: Path) -> None:
    model = EmpiricalLengths.from_file(traces_dir / "azure_conv_sample.csv")
    assert model.input_tokens.size == 30
    assert (int(model.input_tokens[0]), int(model.output_tokens[0])) == (374, 44)


def test_empirical_lengths_reject_zero_rows_unless_dropped(tmp_path: Path) -> None:
    path = tmp_path / "lengths.csv"
    path.write_text("input_tokens,output_tokens\n5,5\n0,3\n7,7\n")
    with pytest.raises(SpecError, match="0 tokens") as err:
        EmpiricalLengths.from_file(path)
    assert err.value.line == 3
    model = EmpiricalLengths.from_file(path, drop_invalid=True)
    assert model.input_tokens.tolist() == [5, 7]
    assert model.dropped_invalid == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [("a,b\n1,2\n", "cannot read lengths"), ("input_tokens,output_tokens\n", "no lengths")],
)
def test_empirical_lengths_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "lengths.csv"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        EmpiricalLengths.from_file(path)


def test_sharegpt_lengths(shared_data: Path) -> None:
    path = (
        shared_data / "sharegpt-lengths-sarathi" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
    )
    if not path.is_file():
        pytest.skip(f"{path} not found")
    model = EmpiricalLengths.from_file(path)
    assert model.input_tokens.size == 30_731
    assert int(model.input_tokens[0]) == 74
    assert int(model.output_tokens[0]) == 918


def test_offline_arrivals_are_all_at_time_zero_across_chunks() -> None:
    lengths = LognormalLengths(input_median=100, input_sigma=0.0, output_median=10, output_sigma=0.0)
    reqs = list(generate_requests(OfflineArrivals(), lengths, seed=3, count=5000, chunk=1024))
    assert len(reqs) == 5000
    assert {r.arrival_s for r in reqs} == {0.0}
    assert [r.request_id for r in reqs] == list(range(5000))
