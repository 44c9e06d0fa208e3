"""The package imports without any host framework and finds a key."""

import subprocess
import sys


def test_import_pulls_in_no_host_framework():
    """Importing ipykeyguard and scanning text imports neither IPython, nbconvert nor jupyter_server."""
    code = (
        "import sys, ipykeyguard; ipykeyguard.scan_text('x = 1');"
        "bad = [m for m in ('IPython', 'nbconvert', 'jupyter_server', 'nbformat') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
