import pytest

from hwsim.spec.dtypes import bytes_per_elem
from hwsim.spec.hardware import EfficiencyFactor, MemoryTier, PowerSpec, PriceSpec


def test_peak_falls_back_to_a_wider_dtype(device):
    assert device.peak_flop_per_s("fp8") == 2e15
    assert device.peak_flop_per_s("int4") == 2e15      # int4 weights run through fp8 units here
    assert device.peak_flop_per_s("fp4") == 2e15
    assert device.peak_flop_per_s("fp16") == 1e15      # fp16 falls back to bf16
    with pytest.raises(KeyError):
        device.peak_flop_per_s("tf32")


def test_main_memory_is_the_largest_compute_tier(make_device):
    d = make_device(memory=(
        MemoryTier(name="l2", kind="l2", capacity_bytes=50e6, bandwidth_bytes_per_s=10e12),
        MemoryTier(name="hbm", kind="hbm", capacity_bytes=80e9, bandwidth_bytes_per_s=3e12),
        MemoryTier(name="ssd", kind="flash", capacity_bytes=2e12, bandwidth_bytes_per_s=6e9),
    ))
    assert d.main_memory.name == "hbm"
    assert d.hbm_bytes == 80e9
    assert d.tier("ssd").kind == "flash"


@pytest.mark.parametrize("kw", [
    {"compute_flop_per_s": {}},
    {"compute_flop_per_s": {"bf17": 1e15}},
    {"compute_flop_per_s": {"bf16": 0.0}},
    {"memory": ()},
    {"kind": "tpu"},
])
def test_device_invariants(make_device, kw):
    with pytest.raises(ValueError):
        make_device(**kw)


def test_price_rental_or_capex():
    assert PriceSpec(usd_per_s=2.0 / 3600).usd_per_hour == pytest.approx(2.0)
    owned = PriceSpec(capex_usd=30000.0, lifetime_s=5 * 365 * 86400.0)
    assert owned.usd_per_hour == pytest.approx(30000 / (5 * 365 * 24))
    with pytest.raises(ValueError):
        PriceSpec()
    with pytest.raises(ValueError):
        PriceSpec(usd_per_s=1.0, capex_usd=1.0, lifetime_s=1.0)


def test_power_and_efficiency_invariants():
    with pytest.raises(ValueError):
        PowerSpec(idle_w=800.0, tdp_w=700.0)
    with pytest.raises(ValueError):
        PowerSpec(idle_w=70.0, tdp_w=700.0, cap_min_w=600.0, cap_max_w=200.0)
    with pytest.raises(ValueError):
        EfficiencyFactor(name="gemm", value=1.2)
    with pytest.raises(ValueError):
        EfficiencyFactor(name="magic", value=0.5)


def test_dtype_sizes():
    assert bytes_per_elem("fp8") == 1.0 and bytes_per_elem("fp4") == 0.5 and bytes_per_elem("bf16") == 2.0
    with pytest.raises(ValueError):
        bytes_per_elem("fp7")
