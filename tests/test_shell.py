"""`vmemu shell`: real procps and psutil acting on the emulator.

The tests run procps inside the private mount namespace and compare what it
reports with the emulated files read straight from the mount.  The last test
checks that the host's /proc was never touched.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import VMEMU, read, vmemu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("unshare", "sysctl", "free", "vmstat", "runuser")
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in TOOLS),
                                reason="needs root, util-linux (unshare, runuser) and procps")
SCRUB = {"scrub_start": ("6", "11"), "scrub_stop": ("4", "2"), "scrub_load": ("500", "999")}   # (set, default)


def host_vm() -> dict:
    """The host's /proc/sys/vm: name -> value (or the errno of a write-only entry)."""
    out = {}
    for name in sorted(os.listdir("/proc/sys/vm")):
        try:
            with open(f"/proc/sys/vm/{name}") as f:
                out[name] = f.read()
        except OSError as e:
            out[name] = e.errno
    return out


def host_memtotal() -> str:
    with open("/proc/meminfo") as f:
        return f.readline()


@pytest.fixture(scope="module")
def host_before():
    return host_vm(), host_memtotal()


def vshell(mp, *cmd, timeout=60, **kw):
    return subprocess.run([*VMEMU, "shell", mp, "--", *cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)


def meminfo(mp) -> dict:
    return {l.split(":")[0]: int(l.split()[1]) for l in read(mp, "proc/meminfo").splitlines()}


def test_host_state_recorded(host_before):
    # Runs first in this module: the fixture records the host before any shell.
    assert "swappiness" in host_before[0] and host_before[1].startswith("MemTotal:")


def test_bind_list_covers_the_real_counterparts(mounted):
    from vmemu.shell import bind_list
    targets = {t for _, t in bind_list(mounted)}
    for t in ("/proc/meminfo", "/proc/buddyinfo", "/proc/vmstat", "/proc/zoneinfo", "/proc/stat",
              "/proc/loadavg", "/proc/uptime", "/proc/cpuinfo", "/proc/sys/vm", "/sys/devices/system/node",
              "/sys/devices/system/cpu"):
        assert t in targets or not os.path.exists(t), t
    # No emulator-only file is bound (it has nothing to cover), nothing under a whole directory twice.
    assert not any("/vmemu/" in t or t.startswith(("/proc/sys/vm/", "/sys/devices/system/cpu/", "/sys/devices/system/node/")) for t in targets)
    assert all(os.path.exists(s) for s, _ in bind_list(mounted))


def test_sysctl_reads_and_writes_every_scrub_key(mounted):
    names = sorted(os.listdir(os.path.join(mounted, "proc/sys/vm")))
    assert set(SCRUB) <= set(names)
    script = "".join(f"sysctl vm.{n} && sysctl -w vm.{n}={SCRUB[n][0]} && " for n in SCRUB) + "true"
    p = vshell(mounted, "sh", "-c", script)
    try:
        assert p.returncode == 0, p.stderr
        for n, (value, default) in SCRUB.items():
            assert f"vm.{n} = {default}\n" in p.stdout         # the read, before the write
            assert f"vm.{n} = {value}\n" in p.stdout           # sysctl -w echoes what it set
            assert read(mounted, f"proc/sys/vm/{n}") == f"{value}\n"   # and the emulator has it
    finally:
        for n, (_, default) in SCRUB.items():
            with open(os.path.join(mounted, f"proc/sys/vm/{n}"), "w") as f:
                f.write(default)


def test_sysctl_invalid_argument(mounted):
    before = read(mounted, "proc/sys/vm/scrub_start")
    p = vshell(mounted, "sysctl", "-w", "vm.scrub_start=abc")
    assert p.returncode == 1
    assert 'sysctl: setting key "vm.scrub_start": Invalid argument' in p.stderr
    assert read(mounted, "proc/sys/vm/scrub_start") == before


def test_sysctl_a_lists_them_and_terminates(mounted):
    # sysctl -a walks all of /proc/sys; the timeout catches a readdir loop.
    p = vshell(mounted, "timeout", "60", "sysctl", "-a", timeout=90)
    assert p.returncode != 124, "sysctl -a did not terminate"
    keys = dict(l.split(" = ", 1) for l in p.stdout.splitlines() if " = " in l)
    vm = sorted(k for k in keys if k.startswith("vm."))
    assert vm == [f"vm.{n}" for n in sorted(os.listdir(os.path.join(mounted, "proc/sys/vm")))]
    assert "kernel.ostype" in keys           # the rest of /proc/sys is the host's


def test_free_and_vmstat_report_the_emulated_totals(mounted):
    p = vshell(mounted, "sh", "-c", "free -k && vmstat -s")
    assert p.returncode == 0, p.stderr
    m = meminfo(mounted)
    mem = re.search(r"^Mem: +(\d+) +(\d+) +(\d+)", p.stdout, re.M)
    assert int(mem.group(1)) == m["MemTotal"] and int(mem.group(3)) == m["MemFree"]
    assert re.search(r"^Swap: +0 +0 +0", p.stdout, re.M)
    assert int(re.search(r"(\d+) K total memory", p.stdout).group(1)) == m["MemTotal"]
    assert int(re.search(r"(\d+) K free memory", p.stdout).group(1)) == m["MemFree"]


def test_cat_and_sys_files_are_the_emulated_ones(mounted):
    p = vshell(mounted, "sh", "-c", "cat /proc/buddyinfo; echo ---; cat /sys/devices/system/cpu/online;"
               " echo ---; ls /sys/devices/system/node; echo ---; cat /proc/sys/vm/scrub_stop")
    assert p.returncode == 0, p.stderr
    buddy, online, nodes, stop = p.stdout.split("---\n")
    assert buddy == read(mounted, "proc/buddyinfo")
    assert online == read(mounted, "sys/devices/system/cpu/online")
    assert nodes.split() == sorted(os.listdir(os.path.join(mounted, "sys/devices/system/node")))
    assert stop == read(mounted, "proc/sys/vm/scrub_stop")


def test_psutil_inside_the_shell_and_with_procfs_path(mounted):
    psutil = pytest.importorskip("psutil")
    code = "import psutil; print(psutil.virtual_memory().total, len(psutil.cpu_times(percpu=True)))"
    p = vshell(mounted, sys.executable, "-c", code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(meminfo(mounted)["MemTotal"] * 1024), "2"]
    old = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = os.path.join(mounted, "proc")
    try:
        assert psutil.virtual_memory().total == meminfo(mounted)["MemTotal"] * 1024
    finally:
        psutil.PROCFS_PATH = old


def test_exit_code_passes_through(mounted):
    assert vshell(mounted, "sh", "-c", "exit 7").returncode == 7
    assert vshell(mounted, "false").returncode == 1
    assert vshell(mounted, "sh", "-c", "kill -TERM $$").returncode == 128 + 15


def test_default_mountpoint_and_no_dashdash(mounted):
    # `vmemu shell MP CMD...` works without "--"; an unmounted directory is a one-line error.
    p = subprocess.run([*VMEMU, "shell", mounted, "true"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([*VMEMU, "shell", "/nonexistent", "--", "true"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "not mounted" in p.stderr


def nobody(*argv, timeout=60):
    # The venv's python may live under /root: nobody runs the system python3 on
    # the source tree (vmemu.cli and vmemu.shell import only the standard library).
    return subprocess.run(["runuser", "-u", "nobody", "--", "env", f"PYTHONPATH={ROOT}", "python3",
                           "-m", "vmemu.cli", *argv], capture_output=True, text=True, timeout=timeout,
                          cwd="/")


@pytest.fixture(scope="module")
def nobody_can_run():
    p = subprocess.run(["runuser", "-u", "nobody", "--", "env", f"PYTHONPATH={ROOT}", "python3", "-c",
                        "import vmemu.shell"], capture_output=True, text=True, cwd="/")
    if p.returncode:
        pytest.skip(f"user nobody cannot import vmemu from {ROOT}: {p.stderr.strip()[-200:]}")
    q = subprocess.run(["runuser", "-u", "nobody", "--", "unshare", "-Urm", "true"], capture_output=True)
    if q.returncode:
        pytest.skip("unprivileged user namespaces are disabled here")


def test_non_root_through_a_user_namespace(mounted, nobody_can_run):
    # The fixture mounts with --allow-other.
    p = nobody("shell", mounted, "--", "sh", "-c", "free -k && sysctl vm.scrub_stop")
    assert p.returncode == 0, p.stderr
    assert re.search(rf"^Mem: +{meminfo(mounted)['MemTotal']} ", p.stdout, re.M)
    assert "vm.scrub_stop = 2" in p.stdout


def test_non_root_without_allow_other_is_a_clear_error(fresh_mountpoint, nobody_can_run):
    vmemu("mount", fresh_mountpoint, "--profile", "x86-64")
    p = nobody("shell", fresh_mountpoint, "--", "true")
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "--allow-other" in p.stderr and "root" in p.stderr


def test_scripts_pft_in_shell_and_sweep(mounted):
    env = dict(os.environ, VMEMU=f"{sys.executable} -m vmemu.cli", PFT_BYTES="16M", PFT_THREADS="1 2",
               BYTES="16M")
    p = subprocess.run(["sh", os.path.join(ROOT, "scripts/pft_in_shell.sh"), mounted], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "vm.scrub_start = 6" in p.stdout and "Threads" in p.stdout and "after:  MemFree:" in p.stdout
    assert read(mounted, "proc/sys/vm/scrub_start") == "11\n"      # restored on exit
    p = subprocess.run(["sh", os.path.join(ROOT, "scripts/sweep_scrub_stop.sh"), mounted, "2"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = p.stdout.splitlines()
    assert rows[0].startswith("scrub_stop") and [r.split()[0] for r in rows[1:]] == ["0", "1", "2"]
    assert read(mounted, "proc/sys/vm/scrub_stop") == "2\n"
    p = subprocess.run(["sh", os.path.join(ROOT, "scripts/watch_zero.sh"), mounted, "2", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("MemZero") == 2 and p.stdout.count("NotZeroed") == 4


def test_psutil_example_script(mounted):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/psutil_example.py"), mounted],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert f"total {meminfo(mounted)['MemTotal'] * 1024} " in p.stdout and "cpus:   2" in p.stdout


def test_host_untouched_afterwards(mounted, host_before):
    vm, memtotal = host_before
    assert host_vm() == vm
    assert host_memtotal() == memtotal
    assert "scrub_start" not in os.listdir("/proc/sys/vm")
    with open("/proc/sys/vm/swappiness") as f:
        assert f.read().strip().isdigit()
    with open("/proc/self/mountinfo") as f:
        assert not [l for l in f if " /proc/" in l.split(" - ")[0] and "vmemu" in l]
