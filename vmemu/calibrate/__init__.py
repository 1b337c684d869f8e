"""vmemu calibrate: this host as a profile, checked against its own kernel.

``host`` reads what the kernel says about the hardware (/sys, /proc);
``measure`` runs the measuring loops of ``probe.c`` and the host pft
(vmemu.hostpft) and returns the primitives, each a value and how it was
measured; ``writer`` turns both into a TOML profile that inherits a base;
``check`` runs the host pft and vmemu pft on the profile side by side;
``cli`` is the `vmemu calibrate` subcommand.
"""
