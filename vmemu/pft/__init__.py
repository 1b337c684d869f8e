"""pft, the page fault test of the seed, run on the emulated machine.

``job``: the job check and run_job; ``report``: output formats, the seed
comparison, plots; ``rows``: rows in parallel processes; ``seed``: the
seed's table; ``cli``: the `vmemu pft` subcommand.  The names below are
the package's interface.
"""

from .job import (SCRUB_DEFAULTS, JobError, JobResult, check_job, prepare_machine, run_job,
                  run_row)
from .report import (CSV_HEADER, TITLE_2004, TITLE_2006, Progress, format_2004, format_2006,
                     format_comparison, format_csv, format_results, plot)
from .rows import default_jobs, run_rows
from .seed import compare_seed, seed_row_spec, seed_rows

__all__ = ["SCRUB_DEFAULTS", "JobError", "JobResult", "check_job", "prepare_machine", "run_job", "run_row",
           "CSV_HEADER", "TITLE_2004", "TITLE_2006", "Progress", "format_2004", "format_2006", "format_comparison",
           "format_csv", "format_results", "plot", "default_jobs", "run_rows", "compare_seed", "seed_row_spec",
           "seed_rows"]
