"""Watching a two-process run: one set of charts, with a memory line for every rank."""
from webui.charts import memory_figure
from webui.live import RunSeries


def test_memory_chart_draws_every_ranks_memory_from_rank0s_events():
    s = RunSeries()
    s.add([{"t": 1, "step": 1, "kind": "train", "loss": 2.0, "vram_alloc_gib": 3.0, "vram_reserved_gib": 4.0,
            "vram_alloc_gib_rank1": 3.5, "vram_reserved_gib_rank1": 4.5},
           {"t": 2, "step": 2, "kind": "train", "loss": 1.9, "vram_alloc_gib": 3.1, "vram_reserved_gib": 4.0,
            "vram_alloc_gib_rank1": 3.6, "vram_reserved_gib_rank1": 4.5}])
    fig = memory_figure(s)
    lines = {t.name: list(t.y) for t in fig.data}
    assert lines == {"VRAM allocated (rank 0)": [3.0, 3.1], "VRAM allocated (rank 1)": [3.5, 3.6],
                     "VRAM reserved (rank 0)": [4.0, 4.0], "VRAM reserved (rank 1)": [4.5, 4.5]}


def test_a_single_process_run_keeps_its_plain_memory_chart():
    s = RunSeries()
    s.add([{"t": 1, "step": 1, "kind": "train", "loss": 2.0, "rss_gib": 1.0}])
    assert [t.name for t in memory_figure(s).data] == ["process RSS"]
