"""vmemu validate: a measured pft table run on a profile, ours beside theirs.

The tables here are measured with `vmemu pft` on x86-64 (so a row that
validate runs as pft runs it has ratios of 1), then doctored; the seed's
own table runs on altix-8 in tests/test_seed_table.py.
"""

import csv
import io

import pytest

from conftest import cli, one_line
from vmemu.cli import main
from vmemu.pft import validate
from vmemu.pft.seed import KERNELS, seed_row_spec, seed_text
from vmemu.profiles import load_profile

HEADER = "kernel,gb,rep,threads,cachelines,user_s,system_s,wall_s,flt_cpu_s,fault_wsec"
PFT_ROWS = {       # kernel name in a table -> the vmemu pft options that measure it
    "stock": ("--kernel", "stock"), "prezero": ("--kernel", "prezero"),
    "prezero-allzeroed": ("--kernel", "prezero", "--prezeroed"),
}


def measure(kernel: str, threads: str) -> list[str]:
    """Table rows of `vmemu pft` on x86-64 (1 GiB, the given threads), with the kernel's name."""
    p = cli("pft", "--profile", "x86-64", "--backing", "none", "-g", "1", "-f", threads, "--format", "csv",
            *PFT_ROWS[kernel])
    assert p.returncode == 0, p.stderr
    return [f"{kernel},{line}" for line in p.stdout.splitlines()[1:]]


def table(tmp_path, rows: list[str], name: str = "t.csv") -> str:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return str(path)


def doubled(row: str, column: str) -> str:
    cells = dict(zip(HEADER.split(","), row.split(",")))
    cells[column] = repr(float(cells[column]) * 2)
    return ",".join(cells.values())


def test_a_table_that_agrees_and_a_doctored_row(tmp_path):
    row = measure("stock", "1")[0]
    p = cli("validate", table(tmp_path, [row, doubled(row, "fault_wsec")]), "--profile", "x86-64")
    one_line(p, 1, "row 2 (stock, 1 thread): fault_wsec ratio 0.500 outside [0.870, 1.150]")
    lines = p.stdout.splitlines()
    assert lines[0].split()[:6] == ["row", "kernel", "gb", "rep", "thr", "cl"] and len(lines) == 4
    first, second = lines[1].split(), lines[2].split()
    assert first[-1] == "1.000" and "*" not in lines[1]              # the row pft measured: ours = theirs
    assert second[-1] == "0.500*" and second[-4] == "1.000"         # only the doctored figure is off
    assert lines[3].startswith("worst ratio: ") and "1 of 2 rows within [0.870, 1.150] on flt_cpu_s, fault_wsec" \
        in lines[3]


@pytest.fixture(scope="module")
def measured():
    """Rows of every kernel name, measured by vmemu pft on x86-64."""
    return measure("stock", "1,2") + measure("prezero", "2") + measure("prezero-allzeroed", "1")


@pytest.mark.slow
def test_every_kernel_name_runs_as_pft_runs_it_csv_parses_and_any_j_gives_the_same_bytes(tmp_path, measured):
    path = table(tmp_path, measured)
    one = cli("validate", path, "--profile", "x86-64", "--csv", "-j", "1")
    assert one.returncode == 0, one.stderr
    two = cli("validate", path, "--profile", "x86-64", "--format", "csv", "-j", "2")
    assert two.stdout == one.stdout and two.returncode == 0
    rows = list(csv.DictReader(io.StringIO(one.stdout)))
    assert [(r["row"], r["kernel"], r["threads"], r["within"]) for r in rows] == [
        ("1", "stock", "1", "yes"), ("2", "stock", "2", "yes"), ("3", "prezero", "2", "yes"),
        ("4", "prezero-allzeroed", "1", "yes")]
    for r in rows:
        # theirs is pft's figures rounded to 3 decimals: the ratios are 1 within that rounding
        assert all(abs(float(r[f"{c}_ratio"]) - 1) < 0.01 for c in validate.RATIO_COLUMNS), r
    text_one = cli("validate", path, "--profile", "x86-64", "-j", "1").stdout
    assert cli("validate", path, "--profile", "x86-64", "-j", "2").stdout == text_one


BAD_TABLES = [
    ("kernel,gb\n", "no column rep"),
    (HEADER + ",colour\n", "unknown column 'colour'"),
    (HEADER + "\n", "a header and no rows"),
    ("# only a comment\n", "no header line"),
    (HEADER + "\nmainline,1,1,1,1,0.1,1,1,1,1\n", "row 1 (line 2): column kernel: 'mainline' is not one of"),
    (HEADER + "\nstock,1,1,1,1,0.1,1,1,1,1\nstock,1,0,1,1,0.1,1,1,1,1\n", "row 2 (line 3): column rep: '0'"),
    (HEADER + "\nstock,1,1,x,1,0.1,1,1,1,1\n", "column threads: 'x' is not an integer >= 1"),
    (HEADER + "\nstock,1,1,1,1,0.1,1,1,0,1\n", "column flt_cpu_s: '0' is not a number above 0"),
    (HEADER + "\nstock,1,1,1,1,0.1,1,1,nan,1\n", "column flt_cpu_s: 'nan' is not a number above 0"),
    (HEADER + "\nstock,1,1,1,1,-1,1,1,1,1\n", "column user_s: '-1' is not a number >= 0"),
    (HEADER + "\nstock,1,1,1\n", "row 1 (line 2): 4 fields, the header has 10"),
    (HEADER + "\nstock,1,1,3,1,0.1,1,1,1,1\n", "row 1 (stock, 3 threads): threads=3: x86-64 has 2 CPUs"),
    (HEADER + "\nstock,1,1,1,65,0.1,1,1,1,1\n", "cachelines=65: a 4096-byte page has 64 cache lines"),
    (HEADER + "\nstock,4,1,1,1,0.1,1,1,1,1\n", "row 1 (stock, 1 thread): 1048576 pages per repetition"),
]


@pytest.mark.parametrize("text, message", BAD_TABLES)
def test_a_bad_table_is_one_line_naming_the_row_or_column(tmp_path, capsys, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert main(["validate", str(path), "--profile", "x86-64"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("vmemu validate: ") and message in err, err


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/t.csv"], "/nonexistent/t.csv: No such file or directory"),
    (["/"], "/: Is a directory"),
    (["--tolerance", "-1"], "'-1': the tolerance is a fraction >= 0"),
    (["--tolerance", "x"], "'x': the tolerance is a fraction >= 0"),
    (["--check", "user_s"], "'user_s' is not a compared column"),
    (["--profile", "nope"], "unknown profile 'nope'"),
    (["--seed", "/nonexistent/t.csv"], "--seed runs the seed's own table"),
    (["--seed", "--profile", "x86-64"],
     "seed-pft-8way.csv (the seed's table): row 1 (stock, 1 thread): 1048576 pages per repetition"),
    (["-j", "0"], "'0' is not a positive count"),
    (["--format", "json"], "invalid choice: 'json'"),
])
def test_bad_options_are_one_line(capsys, args, message):
    assert main(["validate", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and message in err, err


def test_a_table_that_is_not_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"kernel,gb\n\xff\xfe\n")
    one_line(cli("validate", str(path)), 2, f"{path}: not UTF-8 text (byte 10)")


def test_the_shipped_seed_table_reads_as_nine_rows():
    rows = validate.read_table(seed_text(), "seed")
    assert [(r.kernel, r.threads) for r in rows][-2:] == [("prezero", 8), ("prezero-allzeroed", 1)]
    assert len(rows) == 9 and rows[0].theirs["fault_wsec"] == 69566.852 and rows[0].cachelines == 1
    specs = validate.row_specs(rows, load_profile("altix-8"), "seed")
    assert [s["machine"]["kernel"] for s in specs[-2:]] == ["prezero", "prezero"]
    assert [s["machine"]["prezeroed"] for s in specs[-2:]] == [False, True]
    assert specs[0]["job"] == dict(nbytes=4 << 30, threads=1, rep=3, cachelines=1)
    assert set(KERNELS) == {"stock", "prezero", "prezero-allzeroed"}
    assert seed_row_spec({"kernel": "stock", "gb": "1", "rep": "1", "threads": "2", "cachelines": "0"})["job"] \
        == dict(nbytes=1 << 30, threads=2, rep=1, cachelines=0)


def outcome(theirs: float, ours: float) -> validate.Outcome:
    row = validate.Row(1, 2, "stock", 1, 1, 1, 1, {c: theirs for c in validate.FIGURES})
    return validate.Outcome(row, {c: ours for c in validate.FIGURES})


@pytest.mark.parametrize("ours, agrees", [(100, True), (114.9, True), (115.1, False), (87.0, True), (86.9, False)])
def test_the_band_is_as_far_below_one_as_above_by_factor(ours, agrees):
    # [1/1.15, 1.15]: 86.96 .. 115 against 100
    o = outcome(100, ours)
    assert (validate.outside([o], 0.15, ("fault_wsec",)) == []) == agrees
    assert (validate.verdict([o], 0.15, validate.DEFAULT_CHECKED) is None) == agrees


def test_any_table_text_is_rows_or_one_line(tmp_path):
    # whatever the text, reading and checking it gives rows or a TableError of one line
    from hypothesis import given, settings
    from hypothesis import strategies as st
    cells = st.sampled_from(["stock", "prezero", "prezero-allzeroed", "x", "", "0", "1", "2", "3", "-1", "0.5",
                             "1e400", "nan", "9" * 25, '"', "#", " 1 ", "\x00", "\u00e9"] + HEADER.split(","))
    line = st.lists(cells, max_size=12).map(",".join)
    profile = load_profile("x86-64")

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.lists(line, max_size=4), st.booleans())
    def check(lines, with_header):
        text = "\n".join(([HEADER] if with_header else []) + lines)
        try:
            validate.row_specs(validate.read_table(text, "t.csv"), profile, "t.csv")
        except validate.TableError as e:
            assert str(e).startswith("t.csv: ") and "\n" not in str(e), e

    check()
