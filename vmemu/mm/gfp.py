"""GFP flags with their Linux 2.6.10-12 values (include/linux/gfp.h)."""

from typing import Final

__GFP_DMA: Final = 0x01
__GFP_HIGHMEM: Final = 0x02
__GFP_WAIT: Final = 0x10
__GFP_HIGH: Final = 0x20
__GFP_IO: Final = 0x40
__GFP_FS: Final = 0x80
__GFP_COLD: Final = 0x100
__GFP_NOWARN: Final = 0x200
__GFP_NOFAIL: Final = 0x800
__GFP_ZERO: Final = 0x8000          # the part of the prezeroing series merged in 2.6.12

GFP_ATOMIC: Final = __GFP_HIGH
GFP_KERNEL: Final = __GFP_WAIT | __GFP_IO | __GFP_FS
GFP_USER: Final = __GFP_WAIT | __GFP_IO | __GFP_FS
GFP_HIGHUSER: Final = __GFP_WAIT | __GFP_IO | __GFP_FS | __GFP_HIGHMEM

# Python does not mangle module-level dunder names, but they read oddly at call
# sites; these aliases are what the rest of vmemu imports.
GFP_DMA: Final = __GFP_DMA
GFP_HIGHMEM: Final = __GFP_HIGHMEM
GFP_WAIT: Final = __GFP_WAIT
GFP_COLD: Final = __GFP_COLD
GFP_NOWARN: Final = __GFP_NOWARN
GFP_NOFAIL: Final = __GFP_NOFAIL
GFP_ZERO: Final = __GFP_ZERO
