"""The i386-piii profile: a 2-way Pentium III 450 under i386 Linux 2.6.10.
It loads, pft runs on it, and a mounted machine's /proc/cpuinfo is i386's."""

import pytest

from conftest import cli, mounting, read
from vmemu.machine import Machine
from vmemu.profiles import ProfileError, load_profile


def test_the_profile_loads_as_the_machine_it_describes():
    p = load_profile("i386-piii")
    assert p.cpu["arch"] == "i386" and p.nr_cpus == 2 and p.cpu["cores_per_package"] == 1
    assert [(c.name, c.size, c.ways, c.line_size) for c in p.caches] == \
        [("L1d", 16 << 10, 4, 32), ("L1i", 16 << 10, 4, 32), ("L2", 512 << 10, 4, 32)]
    m = Machine(p, backing="none")
    try:
        assert m.page_size == 4096 and m.max_order == 11 and m.cache_line == 32 and m.bte is None
        assert [(z.name, z.spanned_pages) for z in m.zones] == [("DMA", 4096), ("Normal", 94208)]   # 16M + 368M
    finally:
        m.close()


def test_a_small_pft_runs():
    p = cli("pft", "--profile", "i386-piii", "-b", "67108864", "-r", "1", "-f", "1,2", "--kernel", "stock",
            "--format", "csv")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    rows = [line.split(",") for line in p.stdout.splitlines()[1:]]
    assert [(r[2], r[3]) for r in rows] == [("1", "1"), ("2", "1")]       # threads, cache lines
    assert all(float(r[-1]) > 0 for r in rows)


def test_an_unknown_erratum_is_refused(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('inherit = "i386-piii"\n[cpu]\nbugs = { value = "f00f fdvi", source = "test" }\n')
    with pytest.raises(ProfileError, match=r"\[cpu\] bugs: 'fdvi' is not one of fdiv, hlt, f00f, coma"):
        load_profile(str(path))
    path.write_text('inherit = "i386-piii"\n[cpu]\nbugs = { value = "f00f", source = "test" }\n')
    assert load_profile(str(path)).cpu["bugs"] == "f00f"


def test_a_mounted_machine_has_i386_cpuinfo():
    with mounting("i386-piii") as mp:
        records = read(mp, "proc/cpuinfo").split("\n\n")
    assert len(records) == 3 and records[-1] == ""
    for n, record in enumerate(records[:2]):
        fields = dict(line.split("\t", 1) for line in record.split("\n"))
        assert list(fields) == ["processor", "vendor_id", "cpu family", "model", "model name", "stepping",
                                "cpu MHz", "cache size", "fdiv_bug", "hlt_bug", "f00f_bug", "coma_bug", "fpu",
                                "fpu_exception", "cpuid level", "wp", "flags", "bogomips"]
        assert fields["processor"] == f": {n}" and fields["model name"] == ": Pentium III (Katmai)"
        assert fields["f00f_bug"] == ": no" and fields["cache size"] == ": 512 KB"
        assert " sse" in fields["flags"] and " lm" not in fields["flags"]       # 32-bit: no long mode
