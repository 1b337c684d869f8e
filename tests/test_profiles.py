"""Profiles: shipped ones load, every parameter says where it comes from, bad ones are refused."""

import pytest

from vmemu.machine import Machine
from vmemu.profiles import REQUIRED, ProfileError, load_profile, shipped_profiles


def test_shipped_profiles():
    assert {"altix-8", "x86-64", "altix-512"} <= set(shipped_profiles())


@pytest.mark.parametrize("name", ["altix-8", "x86-64", "altix-512"])
def test_every_parameter_has_a_source(name):
    prof = load_profile(name)
    for section, keys in REQUIRED.items():
        for key in keys:
            assert prof.sources.get(f"{section}.{key}"), f"{name}: {section}.{key} has no source"


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
    bad.write_text('inherit = "x86-64"\n[cost]\nclear_bytes_per_ns = { value = "fast" }\n')
    with pytest.raises(ProfileError, match="clear_bytes_per_ns must be float"):
        load_profile(str(bad))


def test_user_profile_inherits(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('name = "mine"\ninherit = "x86-64"\n[machine]\nnode_memory = { value = "512M", source = "test" }\n')
    m = Machine(load_profile(str(p)), backing="none")
    assert m.total_pages == (512 << 20) // 4096
