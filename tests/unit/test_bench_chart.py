"""The benchmark chart is drawn from the results file alone (`python -m benchmarks.pipeline_bench --plot-only`)."""
from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from benchmarks.pipeline_bench import RESULTS, main

pytestmark = pytest.mark.unit


def test_plot_only_redraws_the_chart_from_latest_json(tmp_path, capsys):
    shutil.copy(RESULTS / "latest.json", tmp_path / "latest.json")
    assert main(["--plot-only", "--results", str(tmp_path)]) == 0
    with Image.open(tmp_path / "latest.png") as img:
        assert img.format == "PNG" and img.width >= 1000 and img.height >= 400
    assert "drew" in capsys.readouterr().out
    # without the latency run (--quick) there is no latency panel, and the chart is still drawn
    res = json.loads((tmp_path / "latest.json").read_text())
    res.pop("latency_at_80pct")
    (tmp_path / "latest.json").write_text(json.dumps(res))
    assert main(["--plot-only", "--results", str(tmp_path)]) == 0
    assert (tmp_path / "latest.png").stat().st_size > 10_000


def test_results_name_flinks_floor_and_the_marginal_costs(tmp_path):
    """A run with the Flink copy job and the re-post waves' idle cost reports both; a results
    file from before them (no such keys) is still written."""
    from benchmarks.pipeline_bench import write_results

    res = json.loads((RESULTS / "latest.json").read_text())
    res.update(flink_copy_per_s_per_core=100_000,
               flink_copy={"listings_per_cpu_s": 100_000, "marginal_us": 7.5},
               fast_path_e2e={**res["fast_path_e2e"], "marginal_us": 90.1},
               identical_e2e={**res.get("identical_e2e", res["fast_path_e2e"]), "marginal_us": 28.4})
    res["of_passthrough"] = {**res.get("of_passthrough", {"mix": 0.02, "price_only_reposts": 0.03,
                                                          "identical_reposts": 0.1}), "flink_copy": 0.4}
    write_results(res, tmp_path)
    md = (tmp_path / "latest.md").read_text()
    assert "| Flink SQL copy of the topic (Flink's floor) | 100,000 |" in md
    assert "a Flink SQL copy of the topic 40.0%" in md
    assert "Flink SQL copy 7.5 µs, price-only re-post 90.1 µs, identical re-post 28.4 µs" in md
    old = json.loads((RESULTS / "latest.json").read_text())
    write_results(old, tmp_path)
    assert "Flink SQL copy" not in (tmp_path / "latest.md").read_text()
