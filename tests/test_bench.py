"""The benchmark's --tiny mode keeps working and reports every field for every method."""
from core.registry import all_methods
from tools.bench import main

FIELDS = ("cold", "warm", "unet_forward", "unet_backward", "vae_passes", "floor_cold_s", "floor_warm_s",
          "ratio_cold", "ratio_warm")


def test_tiny_bench_reports_every_method(tmp_path, capsys):
    out = tmp_path / "bench.json"
    report = main(["--tiny", "--out", str(out)])
    assert out.read_text().strip().startswith("{")
    for key in ("device", "torch", "diffusers", "date", "size", "unit_costs_s"):
        assert key in report
    assert set(report["methods"]) == {m.name for m in all_methods()}
    for name, m in report["methods"].items():
        for f in FIELDS:
            assert m[f] is not None, (name, f)
        for run in ("cold", "warm"):
            assert m[run]["seconds"] > 0 and m[run]["stages"] and m[run]["first_preview_s"] is not None
        assert m["unet_forward"] > 0 and m["floor_cold_s"] > 0
        # A warm run never does more UNet work than a cold one: caches only remove passes.
        assert m["warm"]["passes"].get("unet_samples", 0) <= m["cold"]["passes"]["unet_samples"]
