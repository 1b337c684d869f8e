"""The proc_dointvec rules through the mount (vmemu/fs/sysctl.py)."""

import contextlib
import errno
import os
import shutil

import pytest

from conftest import read, sh

VM = "proc/sys/vm"


@pytest.fixture
def start(mounted):
    """proc/sys/vm/scrub_start, reset to 11 (MAX_ORDER: scrubd off) around the test."""
    path = os.path.join(mounted, VM, "scrub_start")
    with open(path, "w") as f:
        f.write("11\n")
    yield path
    with open(path, "w") as f:
        f.write("11\n")


@contextlib.contextmanager
def opened(path, flags):
    """An fd on path, closed afterwards: the tests below need raw write()/pread()."""
    fd = os.open(path, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def value(path) -> str:
    with open(path) as f:
        return f.read()


def test_defaults(mounted):
    # The seed's defaults: scrub_start = MAX_ORDER (off), scrub_stop 2, scrub_load 999.
    assert read(mounted, f"{VM}/scrub_stop") == "2\n"
    assert read(mounted, f"{VM}/scrub_load") == "999\n"


@pytest.mark.parametrize("bad", ["abc", "5.5", "50abc", "+5", " ", "-", "2147483648", "0x", "9" * 25])
def test_bash_invalid_argument_and_value_unchanged(start, bad):
    p = sh(f"echo '{bad}' > {start}", shell="bash")
    assert p.returncode == 1
    assert "write error: Invalid argument" in p.stderr
    assert value(start) == "11\n"


def test_dash_reports_io_error_style(start):
    # dash prints its own text for every write error; the exit status is what matters.
    assert sh(f"echo abc > {start}", shell="sh").returncode != 0
    assert value(start) == "11\n"


@pytest.mark.parametrize("text, expect", [("5 6", 5), ("010", 8), ("0x10", 16), ("  7", 7), ("-3", -3),
                                          ("\t4\t", 4), ("2147483647", 2147483647)])
def test_echo_sets(start, text, expect):
    p = sh(f"printf '%s\\n' '{text}' > {start}", shell="bash")
    assert p.returncode == 0, p.stderr
    assert value(start) == f"{expect}\n"


def test_two_numbers_consume_first_only(start):
    with opened(start, os.O_WRONLY) as fd:
        assert os.write(fd, b"5 6\n") == 2      # bytes consumed: "5 "
    assert value(start) == "5\n"


def test_pwrite_at_offset_is_ignored_but_succeeds(start):
    with opened(start, os.O_WRONLY) as fd:
        assert os.pwrite(fd, b"7\n", 5) == 2
    assert value(start) == "11\n"


def test_read_at_offset_gives_eof_and_short_buffer_truncates(start):
    with opened(start, os.O_RDONLY) as fd:
        assert os.pread(fd, 100, 1) == b""
        assert os.pread(fd, 1, 0) == b"1"
        assert os.pread(fd, 100, 0) == b"11\n"
        assert os.read(fd, 100) == b"11\n"
        assert os.read(fd, 100) == b""


def test_empty_write_changes_nothing(start):
    with opened(start, os.O_WRONLY | os.O_TRUNC) as fd:
        assert os.write(fd, b"") == 0
    assert value(start) == "11\n"


def test_oserror_errno_is_einval(start):
    with opened(start, os.O_WRONLY) as fd:
        with pytest.raises(OSError) as e:
            os.write(fd, b"50\r\n")
        assert e.value.errno == errno.EINVAL


def test_each_sysctl_is_independent(mounted, start):
    stop = os.path.join(mounted, VM, "scrub_stop")
    assert sh(f"echo 3 > {stop} && echo 4 > {start}", shell="bash").returncode == 0
    assert value(stop) == "3\n" and value(start) == "4\n"
    assert sh(f"echo 2 > {stop}").returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("sysctl"),
                    reason="needs root, unshare and procps sysctl")
def test_procps_sysctl_in_private_namespace(mounted, start):
    p = sh(f"unshare -m sh -c 'mkdir -p /proc/sys/vm && mount --bind {mounted}/proc/sys/vm /proc/sys/vm && "
           f"sysctl -w vm.scrub_start=6 && sysctl vm.scrub_start && sysctl -a 2>/dev/null | grep -c scrub_; "
           f"sysctl -w vm.scrub_start=x'")
    assert "vm.scrub_start = 6\nvm.scrub_start = 6\n3\n" in p.stdout, p.stdout + p.stderr
    assert 'setting key "vm.scrub_start": Invalid argument' in p.stderr
    assert value(start) == "6\n"
