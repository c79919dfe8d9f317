"""Live per-trial metrics for the Ray dashboard / Prometheus (`ray.util.metrics`).

Ray exports each gauge as `ray_<name>` on every node's metrics endpoint, tagged here with
sweep, trial and variant so Grafana panels can split by any of them.
"""
from __future__ import annotations

import ray

TAG_KEYS = ("sweep", "trial", "variant")
GAUGES = {
    "loss": ("jepa_loss", "training loss (last logged step)"),
    "samples_per_s": ("jepa_samples_per_second", "training throughput over all workers"),
    "flops_total": ("jepa_flops_total", "training FLOPs spent so far"),
    "mfu": ("jepa_mfu", "model FLOPs utilisation vs the measured bf16 matmul peak (GPU only)"),
    "probe_acc": ("jepa_probe_accuracy", "latest frozen-probe accuracy"),
}


class DashboardGauges:
    """Sets one gauge per known metric; a no-op outside a Ray process (bare benchmarks)."""

    def __init__(self, sweep: str, trial: str, variant: str):
        self.enabled = ray.is_initialized()
        self.gauges = {}
        if not self.enabled:
            return
        from ray.util.metrics import Gauge

        tags = {"sweep": sweep, "trial": trial, "variant": variant}
        for key, (name, description) in GAUGES.items():
            gauge = Gauge(name, description=description, tag_keys=TAG_KEYS)
            gauge.set_default_tags(tags)
            self.gauges[key] = gauge

    def publish(self, values: dict) -> None:
        for key, gauge in self.gauges.items():
            if key in values and values[key] is not None:
                gauge.set(float(values[key]))
