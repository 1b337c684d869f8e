"""sys/devices/system/{cpu,node} and proc/cpuinfo: the kernel's formats,
from the profile, and the kernel's errno for every write."""

import errno
import os

import pytest

from conftest import mounting, read
from vmemu.daemon import Kernel
from vmemu.fs.topology import cpulist, cpumap
from vmemu.machine import Machine

CPU = "sys/devices/system/cpu"
NODE = "sys/devices/system/node"


@pytest.fixture(scope="module")
def trees():
    """profile -> the daemon's file table (no mount: the render functions)."""
    kernels = {p: Kernel(Machine(p, backing="none")) for p in ("altix-8", "x86-64", "i386-piii")}
    yield {p: k.tree for p, k in kernels.items()}
    for k in kernels.values():
        k.machine.close()


def text(tree, path) -> str:
    return tree[path].generate().decode()


@pytest.mark.parametrize("ids, nbits, want", [
    ([0, 1], 2, "3"), ([2, 3], 8, "0c"), ([], 8, "00"), ([31], 32, "80000000"),
    ([0], 33, "0,00000001"), ([32], 33, "1,00000000"),
    ([0], 512, "00000000," * 15 + "00000001"), ([510, 511], 512, "c0000000" + ",00000000" * 15),
])
def test_cpumap_is_the_kernels_bitmap_format(ids, nbits, want):
    # lib/vsprintf.c bitmap_string: 32-bit groups, the first only as wide as its bits
    assert cpumap(ids, nbits) == want + "\n"


def test_cpulist():
    assert cpulist([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11\n" and cpulist([]) == "\n"


def test_cpu_directory(trees):
    t = trees["altix-8"]
    for name in ("possible", "present", "online"):
        assert text(t, f"{CPU}/{name}") == "0-7\n"
    assert text(t, f"{CPU}/offline") == "\n"
    assert text(t, f"{CPU}/kernel_max") == "1023\n"                # sn2_defconfig NR_CPUS 1024
    assert text(trees["x86-64"], f"{CPU}/kernel_max") == "7\n"
    assert f"{CPU}/cpu0/online" not in t and text(t, f"{CPU}/cpu7/online") == "1\n"   # the boot CPU stays
    assert t[f"{CPU}/cpu5/node2"].target == "../../node/node2"
    assert t[f"{NODE}/node2/cpu5"].target == "../../cpu/cpu5"


def test_topology_one_package_per_madison_two_cores_per_opteron(trees):
    a = {k: text(trees["altix-8"], f"{CPU}/cpu5/topology/{k}") for k in
         ("physical_package_id", "core_id", "thread_siblings", "core_siblings", "core_siblings_list")}
    assert a == {"physical_package_id": "5\n", "core_id": "0\n", "thread_siblings": "20\n",
                 "core_siblings": "20\n", "core_siblings_list": "5\n"}
    x = {k: text(trees["x86-64"], f"{CPU}/cpu1/topology/{k}") for k in
         ("physical_package_id", "core_id", "thread_siblings_list", "core_siblings", "core_siblings_list")}
    assert x == {"physical_package_id": "0\n", "core_id": "1\n", "thread_siblings_list": "1\n",
                 "core_siblings": "3\n", "core_siblings_list": "0-1\n"}


def test_cache_leaves_per_architecture(trees):
    d = f"{CPU}/cpu3/cache"
    ia64 = {k: text(trees["altix-8"], f"{d}/index3/{k}") for k in
            ("level", "type", "size", "coherency_line_size", "ways_of_associativity", "number_of_sets",
             "shared_cpu_map", "attributes")}
    assert ia64 == {"level": "3\n", "type": "Unified\n", "size": "6144K\n", "coherency_line_size": "128\n",
                    "ways_of_associativity": "24\n", "number_of_sets": "2048\n", "shared_cpu_map": "08\n",
                    "attributes": "WriteBack\n"}
    assert text(trees["altix-8"], f"{d}/index0/attributes") == "WriteThrough\n"      # L1D
    assert f"{d}/index0/id" not in trees["altix-8"]          # ia64's own attribute set: no id, no list
    assert [text(trees["altix-8"], f"{d}/index{i}/type") for i in range(4)] == \
        ["Data\n", "Instruction\n", "Unified\n", "Unified\n"]
    x = f"{CPU}/cpu1/cache/index2"
    assert {k: text(trees["x86-64"], f"{x}/{k}") for k in ("id", "size", "shared_cpu_list", "physical_line_partition")} \
        == {"id": "1\n", "size": "1024K\n", "shared_cpu_list": "1\n", "physical_line_partition": "1\n"}
    assert f"{x}/attributes" not in trees["x86-64"] and f"{CPU}/cpu1/cache/index3/size" not in trees["x86-64"]


def test_node_directory(trees):
    t = trees["altix-8"]
    for name in ("possible", "online", "has_cpu", "has_memory", "has_normal_memory"):
        assert text(t, f"{NODE}/{name}") == "0-3\n"
    assert text(t, f"{NODE}/node3/cpumap") == "c0\n" and text(t, f"{NODE}/node3/cpulist") == "6-7\n"
    assert text(t, f"{NODE}/node3/distance") == "40 40 20 10\n"
    meminfo = text(t, f"{NODE}/node1/meminfo").split("\n")
    assert [l.split()[2] for l in meminfo[:4]] == ["MemTotal:", "MemFree:", "MemZero:", "MemUsed:"]
    assert meminfo[0] == "Node 1 MemTotal:        1572864 kB"
    vmstat = dict(l.split() for l in text(t, f"{NODE}/node1/vmstat").splitlines())
    assert vmstat["nr_free_pages"] == str(1572864 // 16) and "numa_hit" in vmstat


def test_cpuinfo_ia64_2_6_10(trees):
    records = text(trees["altix-8"], "proc/cpuinfo").split("\n\n")
    assert len(records) == 9 and records[-1] == ""
    assert records[3].split("\n") == [
        "processor  : 3", "vendor     : GenuineIntel", "arch       : IA-64", "family     : Itanium 2",
        "model      : 1", "revision   : 5", "archrev    : 0", "features   : branchlong", "cpu number : 0",
        "cpu regs   : 4", "cpu MHz    : 1500.000000", "itc MHz    : 1500.000000", "BogoMIPS   : 2244.60"]


def test_cpuinfo_x86_64(trees):
    records = text(trees["x86-64"], "proc/cpuinfo").split("\n\n")
    assert len(records) == 3 and records[-1] == ""
    rows = records[1].split("\n")
    assert rows[:12] == [
        "processor\t: 1", "vendor_id\t: AuthenticAMD", "cpu family\t: 15", "model\t\t: 33",
        "model name\t: Dual Core AMD Opteron(tm) Processor 280", "stepping\t: 2", "cpu MHz\t\t: 2400.000",
        "cache size\t: 1024 KB", "physical id\t: 0", "siblings\t: 2", "core id\t\t: 1", "cpu cores\t: 2"]
    assert " lm " in rows[16] and rows[-1] == "power management: ts fid vid ttp"


def test_cpuinfo_i386_2_6_10(trees):
    # arch/i386/kernel/cpu/proc.c: no physical id or siblings without HT siblings,
    # the errata lines, flags as " name" each, bogomips last
    records = text(trees["i386-piii"], "proc/cpuinfo").split("\n\n")
    assert len(records) == 3 and records[-1] == ""
    assert records[1].split("\n") == [
        "processor\t: 1", "vendor_id\t: GenuineIntel", "cpu family\t: 6", "model\t\t: 7",
        "model name\t: Pentium III (Katmai)", "stepping\t: 3", "cpu MHz\t\t: 450.000", "cache size\t: 512 KB",
        "fdiv_bug\t: no", "hlt_bug\t\t: no", "f00f_bug\t: no", "coma_bug\t: no", "fpu\t\t: yes",
        "fpu_exception\t: yes", "cpuid level\t: 2", "wp\t\t: yes",
        "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 mmx fxsr sse",
        "bogomips\t: 897.84"]


def test_i386_topology_and_caches(trees):
    t = trees["i386-piii"]
    assert text(t, f"{CPU}/online") == "0-1\n" and text(t, f"{CPU}/kernel_max") == "7\n"     # NR_CPUS 8
    assert {k: text(t, f"{CPU}/cpu1/topology/{k}") for k in ("physical_package_id", "core_id", "core_siblings_list")} \
        == {"physical_package_id": "1\n", "core_id": "0\n", "core_siblings_list": "1\n"}       # two sockets
    leaves = [{k: text(t, f"{CPU}/cpu0/cache/index{i}/{k}") for k in ("type", "size", "coherency_line_size",
                                                                      "number_of_sets")} for i in range(3)]
    assert leaves == [{"type": "Data\n", "size": "16K\n", "coherency_line_size": "32\n", "number_of_sets": "128\n"},
                      {"type": "Instruction\n", "size": "16K\n", "coherency_line_size": "32\n",
                       "number_of_sets": "128\n"},
                      {"type": "Unified\n", "size": "512K\n", "coherency_line_size": "32\n",
                       "number_of_sets": "4096\n"}]
    assert text(t, f"{NODE}/online") == "0\n" and text(t, f"{NODE}/node0/cpulist") == "0-1\n"


def write(path, data: bytes) -> int:
    """The errno of one write(2) of data (0 if it took it all)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        return 0 if os.write(fd, data) == len(data) else -1
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def test_writes_get_the_kernels_errno():
    with mounting("altix-8", "--backing", "none") as mp:
        online = os.path.join(mp, f"{CPU}/cpu1/online")
        assert os.stat(online).st_mode & 0o777 == 0o644
        assert write(online, b"1\n") == 0 and read(mp, f"{CPU}/cpu1/online") == "1\n"
        assert write(online, b"0\n") == errno.EBUSY          # the model cannot take a CPU away
        assert write(online, b"maybe\n") == errno.EINVAL     # kstrtobool
        assert read(mp, f"{CPU}/cpu1/online") == "1\n"
        for path in (f"{CPU}/online", f"{CPU}/cpu1/topology/core_id", f"{NODE}/node0/cpumap"):
            assert os.stat(os.path.join(mp, path)).st_mode & 0o777 == 0o444
            # sysfs refuses a read-only attribute to root too (EACCES; at open in the kernel)
            assert write(os.path.join(mp, path), b"0\n") == errno.EACCES, path
        link = os.path.join(mp, f"{CPU}/cpu3/node1")
        assert os.readlink(link) == "../../node/node1" and os.path.samefile(link, os.path.join(mp, f"{NODE}/node1"))
        assert sorted(os.listdir(link)) == sorted(os.listdir(os.path.join(mp, f"{NODE}/node1")))
        with pytest.raises(OSError) as e:
            os.symlink("x", os.path.join(mp, f"{CPU}/cpu3/nodeX"))
        assert e.value.errno in (errno.EPERM, errno.ENOSYS, errno.EROFS, errno.ENOENT)
