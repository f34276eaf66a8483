"""What the host-side tools need, installed when missing (as tools/test does): Debian packages
through apt-get (with an `apt-get update` first on a machine that never ran one), Python
modules through this interpreter's pip. Used by tools/vm and the benchmark drivers before they
import anything that is not in the standard library.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys


def say(msg: str) -> None:
    print(f"[deps] {msg}", file=sys.stderr, flush=True)


def missing_modules(modules: dict[str, str]) -> list[str]:
    """The pip specs of the modules (import name -> pip spec) this Python cannot import."""
    return [spec for name, spec in modules.items() if importlib.util.find_spec(name) is None]


def ensure_python(modules: dict[str, str]) -> None:
    """pip-install the modules this interpreter lacks (import name -> pip spec)."""
    need = missing_modules(modules)
    if not need:
        return
    if importlib.util.find_spec("pip") is None:
        ensure_debian({"/usr/lib/python3/dist-packages/pip": "python3-pip"})
    say(f"installing {' '.join(need)} for {sys.executable}")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", *need]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 and "externally-managed-environment" in r.stderr:
        # Debian's own python3 (PEP 668): these test tools may go beside its packages.
        r = subprocess.run([*cmd, "--break-system-packages"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"pip install {' '.join(need)} failed:\n{r.stdout}{r.stderr}")
    importlib.invalidate_caches()
    still = missing_modules(modules)
    if still:
        sys.exit(f"still missing after pip install: {still}")


def _dpkg_installed(package: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True,
                       text=True)
    return "ok installed" in r.stdout


def apt_install(packages: list[str]) -> None:
    """apt-get install the packages; on a machine whose package lists are empty or stale (a
    fresh container), `apt-get update` first."""
    if not packages:
        return
    if shutil.which("apt-get") is None:
        sys.exit(f"missing Debian packages {packages} and no apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *packages]
    say("apt-get install " + " ".join(packages))
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode == 0:
        return
    subprocess.run([*sudo, "apt-get", "update"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)


def ensure_debian(files: dict[str, str]) -> None:
    """Install the Debian package of each file that is absent (path -> package)."""
    apt_install(sorted({p for f, p in files.items() if not os.path.exists(f)}))


def ensure_packages(packages: list[str]) -> None:
    """Install the Debian packages that are not installed."""
    apt_install([p for p in packages if not _dpkg_installed(p)])
