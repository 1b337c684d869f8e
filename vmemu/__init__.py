"""vmemu: the Linux 2004-05 prezeroing patches, emulated, served as /proc and /sys."""

from . import native

native.install()       # the compiled model only when it matches its sources
