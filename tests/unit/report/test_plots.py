"""Plots: each a non-empty PNG, written atomically; plots without data are skipped."""

from __future__ import annotations

import pytest

from hwsim.report.plots import plot_all, plot_expert_load, plot_latency_cdf, plot_link_traffic
from hwsim.report.tables import timeseries

from .conftest import make_result

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_plot_is_a_png(result, tmp_path):
    written = plot_all(result, timeseries(result, 1.0), tmp_path / "plots")
    names = sorted(p.name for p in written)
    assert names == ["expert_load.png", "kv_use.png", "latency_cdf.png", "link_traffic.png",
                     "power.png", "throughput.png"]
    for p in written:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 2000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == names  # no temporary files left


def test_plots_without_data_are_skipped(tmp_path):
    bare = make_result(expert_load=None, link_bytes={}, requests=[], steps=[], rejections=())
    assert plot_expert_load(bare, tmp_path / "e.png") is None
    assert plot_link_traffic(bare, tmp_path / "l.png") is None
    assert plot_latency_cdf(bare, tmp_path / "c.png").read_bytes().startswith(PNG)  # says "no requests"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]


def test_failed_plot_leaves_no_file(result, tmp_path, monkeypatch):
    import matplotlib.figure

    def boom(self, fname, **kw):
        open(fname, "wb").close()
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", boom)
    with pytest.raises(RuntimeError):
        plot_latency_cdf(result, tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []
