"""Profiles: shipped ones load, every parameter says where it comes from, bad ones are refused."""

import pytest

from vmemu.machine import Machine
from vmemu.profiles import ARCH_REQUIRED, REQUIRED, ProfileError, load_profile, shipped_profiles


def test_shipped_profiles():
    assert {"altix-8", "x86-64", "altix-512", "i386-piii"} <= set(shipped_profiles())


@pytest.mark.parametrize("name", ["altix-8", "x86-64", "altix-512", "i386-piii"])
def test_every_parameter_has_a_source(name):
    prof = load_profile(name)
    for section, keys in REQUIRED.items():
        for key in keys:
            assert prof.sources.get(f"{section}.{key}"), f"{name}: {section}.{key} has no source"
    for key in ARCH_REQUIRED[prof.cpu["arch"]]:
        assert prof.sources.get(f"cpu.{key}"), f"{name}: cpu.{key} has no source"
    for cache in prof.caches:
        assert prof.sources.get(f"cache.{cache.name}"), f"{name}: cache.{cache.name} has no source"


def test_altix_8_has_at_most_4_fitted_values_each_naming_its_data():
    prof = load_profile("altix-8")
    fitted = {k: s for k, s in prof.sources.items() if s.startswith("fitted")}
    assert len(fitted) <= 4, sorted(fitted)
    assert all("with the" in s for s in fitted.values()), fitted


def test_altix_8_is_the_seed_machine():
    m = Machine("altix-8", backing="none")
    assert len(m.cpus) == 8 and m.page_size == 16384 and m.max_order == 18 and m.cache_line == 128
    assert m.total_pages * m.page_size == 6 << 30
    assert [z.name for z in m.zones] == ["DMA"] * 4


def test_x86_64_layout():
    m = Machine("x86-64", backing="none")
    assert m.page_size == 4096 and m.max_order == 11
    assert [(z.name, z.spanned_pages) for z in m.zones] == [("DMA", 4096), ("Normal", 520192)]


def test_altix_512_boots_metadata_only():
    m = Machine("altix-512")
    assert len(m.cpus) == 512 and m.total_pages * m.page_size == 4 << 40
    assert not m.memory.real


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ProfileError, match="unknown profile 'nope'.*altix-8"):
        load_profile("nope")


def test_bad_profile_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('inherit = "x86-64"\n[machine]\npage_size = { value = 6144, source = "x" }\n')
    with pytest.raises(ProfileError, match="page_size must be a power of two"):
        load_profile(str(bad))
    bad.write_text("this is not toml [")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(str(bad))
    bad.write_text('inherit = "x86-64"\n[memory]\nbus_bytes_per_ns = { value = "fast" }\n')
    with pytest.raises(ProfileError, match="bus_bytes_per_ns must be float"):
        load_profile(str(bad))


def test_user_profile_inherits(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('name = "mine"\ninherit = "x86-64"\n[machine]\nnode_memory = { value = "512M", source = "test" }\n')
    m = Machine(load_profile(str(p)), backing="none")
    assert m.total_pages == (512 << 20) // 4096


def test_cache_geometry():
    # One schema for every profile: sizes in bytes, sets derived, sharing by consecutive CPU ids.
    l1d, l1i, l2, l3 = load_profile("altix-8").caches
    assert (l1d.name, l1d.type, l1d.size, l1d.ways, l1d.line_size, l1d.sets) == ("L1d", "Data", 16384, 4, 64, 64)
    assert l1i.type == "Instruction" and l2.level == 2 and l2.line_size == 128
    assert (l3.size, l3.sets, list(l3.sharing(5))) == (6 << 20, 2048, [5])
    assert [c.name for c in load_profile("x86-64").caches] == ["L1d", "L1i", "L2"]
    assert load_profile("altix-512").caches == load_profile("altix-8").caches      # inherited


CACHE = ('[cache]\nL9 = {{ level = {level}, type = "{type}", size = "{size}", line_size = 64, ways = 4, '
         'shared_cpus = {shared}, write_policy = "WriteBack", source = "test" }}\n')
LEAF = dict(level=2, type="Unified", size="64K", shared=1)


def refused(tmp_path, text: str, message: str) -> None:
    """A profile inheriting x86-64 with text added is refused with message."""
    p = tmp_path / "bad.toml"
    p.write_text('inherit = "x86-64"\n' + text)
    with pytest.raises(ProfileError, match=message):
        load_profile(str(p))


@pytest.mark.parametrize("text, message", [
    (CACHE.format(**LEAF | dict(level=4)), "level must be 1..3"),
    (CACHE.format(**LEAF | dict(type="Victim")), "type is one of Data, Instruction, Unified"),
    (CACHE.format(**LEAF | dict(size="1000")), "whole number of sets"),
    (CACHE.format(**LEAF | dict(shared=3)), "shared_cpus must divide cpus_per_node"),
    ('[cache]\nL2 = { level = 2, type = "Unified", size = "1M" }\n', r"\[cache\] L2.line_size must be int"),
    (CACHE.format(**LEAF).replace('source = "test"', 'source = "test", color = "red"'), "unknown keys color"),
    ('[cpu]\narch = { value = "sparc64", source = "test" }\n', "arch must be one of ia64, x86_64, i386"),
    ('[cpu]\narch = { value = "i386", source = "test" }\n', r"\[cpu\] bugs is missing"),
    ('[cpu]\ncores_per_package = { value = 3, source = "test" }\n', "cores_per_package must divide cpus_per_node"),
    ('[cpu]\nnr_cpus_config = { value = 1, source = "test" }\n', "nr_cpus_config must be in 2..4096"),
])
def test_bad_cpu_or_cache_is_refused(tmp_path, text, message):
    refused(tmp_path, text, message)


def test_an_inheriting_profile_changes_its_own_cpu_table(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('inherit = "x86-64"\n[cpu]\nmodel = { value = 5, source = "test" }\n')
    assert load_profile(str(p)).cpu["model"] == 5 and load_profile("x86-64").cpu["model"] == 33


@pytest.mark.parametrize("saved_path", ["/gone.toml", "older copy"])
def test_a_machine_saved_before_cpu_and_cache_existed_takes_them_from_its_profile(tmp_path, saved_path):
    # An older vmemu's --state file holds a machine dict without [cpu] and [cache],
    # and the path of its profile file: gone, or an older copy without them.
    from vmemu.profiles import PROFILE_DIR, Profile
    if saved_path == "older copy":
        text = (PROFILE_DIR / "x86-64.toml").read_text()
        older = tmp_path / "x86-64.toml"
        older.write_text(text[:text.index("[cpu]")] + text[text.index("[cost]"):])
        saved_path = str(older)
    p = load_profile("x86-64")
    old = {k: v for k, v in p.machine.items() if k not in ("cpu", "cache")}
    restored = Profile(name="x86-64", description="", machine=old, cost=p.cost, bte=p.bte, path=saved_path)
    assert restored.cpu == p.cpu and restored.caches == p.caches
    assert restored.sources["cache.L2"] == p.sources["cache.L2"]
