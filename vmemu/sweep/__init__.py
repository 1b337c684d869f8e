"""vmemu sweep: pft over a grid of parameters, one fresh machine a point.

``spec``: the spec file, read and checked as `vmemu pft` checks its
options; ``engines``: where the points run (processes here, or a Dask
cluster); ``output``: CSV and JSON rows, --resume, plots; ``progress``:
the bar; ``cli``: the `vmemu sweep` subcommand.
"""
