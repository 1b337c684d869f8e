"""The largest machine boots small: free memory is blocks, not per-page objects."""

import json
import subprocess
import sys

PROBE = """
import json, time
t = time.perf_counter()
from vmemu.machine import Machine
m = Machine("altix-512")
boot = time.perf_counter() - t
print(json.dumps({"boot_s": boot, "rss_mib": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024,
                  "pages": m.total_pages, "blocks": sum(a.nr_free for z in m.zones for a in z.free_area[0])}))
"""


def test_altix_512_boot_rss_under_256_mib():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    assert r["pages"] == (4 << 40) // 16384
    assert r["blocks"] < 10_000            # 4 TiB as a few blocks per node
    assert r["rss_mib"] < 256, r
