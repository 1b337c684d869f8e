"""GFP flags with their Linux 2.6.10-12 values (include/linux/gfp.h)."""

__GFP_DMA = 0x01
__GFP_HIGHMEM = 0x02
__GFP_WAIT = 0x10
__GFP_HIGH = 0x20
__GFP_IO = 0x40
__GFP_FS = 0x80
__GFP_COLD = 0x100
__GFP_NOWARN = 0x200
__GFP_NOFAIL = 0x800
__GFP_ZERO = 0x8000          # the part of the prezeroing series merged in 2.6.12

GFP_ATOMIC = __GFP_HIGH
GFP_KERNEL = __GFP_WAIT | __GFP_IO | __GFP_FS
GFP_USER = __GFP_WAIT | __GFP_IO | __GFP_FS
GFP_HIGHUSER = __GFP_WAIT | __GFP_IO | __GFP_FS | __GFP_HIGHMEM

# Python does not mangle module-level dunder names, but they read oddly at call
# sites; these aliases are what the rest of vmemu imports.
GFP_DMA = __GFP_DMA
GFP_HIGHMEM = __GFP_HIGHMEM
GFP_WAIT = __GFP_WAIT
GFP_COLD = __GFP_COLD
GFP_NOWARN = __GFP_NOWARN
GFP_NOFAIL = __GFP_NOFAIL
GFP_ZERO = __GFP_ZERO
