"""A real browser for tests: Debian's chromium, installed on first use when missing.

Playwright drives it through ``executable_path``; Playwright's own browser download is
never used (it cannot reach its CDN here, and the system's chromium is the one users
have). Installing needs root and Debian's package registry, as CI has.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from modelstream.errors import ConfigurationError

CHROMIUM = "/usr/bin/chromium"

# Flags that keep a headless chromium from reaching out to the network on its own.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def ensure_chromium(timeout_s: float = 600.0) -> str:
    """The path of chromium, installing Debian's package first if it is missing."""
    found = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if found:
        return found
    if os.geteuid() != 0:
        raise ConfigurationError(
            "chromium is not installed: run `sudo apt-get install -y chromium` and retry"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
        )
        if done.returncode != 0:
            raise ConfigurationError(
                f"could not install chromium ({' '.join(command)} failed): "
                f"{done.stderr.strip()[-300:]}"
            )
    if not os.path.exists(CHROMIUM):
        raise ConfigurationError("apt-get installed chromium but /usr/bin/chromium is missing")
    return CHROMIUM
