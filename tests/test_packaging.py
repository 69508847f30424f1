"""The distribution: both packages and both console scripts, and no top-level `operator` package."""
from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_wheel_has_both_packages_and_console_scripts(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("octavia_operator-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"octavia_operator", "octavia_hostagent"}, tops  # never a package named `operator`
    assert "octavia-operator = octavia_operator.cli:main" in entry_points
    assert "octavia-hostagent = octavia_hostagent.cli:main" in entry_points
    assert "octavia_operator/builders/certificates.py" in names
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_the_stdlib_operator_module_is_not_shadowed():
    out = subprocess.run([sys.executable, "-c", "import operator, octavia_operator; print(operator.__file__)"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert "site-packages" not in out and "/operator/" not in out.replace("\\", "/").split("lib")[-1]
