"""A package's releases as the package index lists them, kept to those with a wheel this Python
and platform can install, oldest first.

The list comes from the index pip uses (``PIP_INDEX_URL``, pip's ``global.index-url``, else
PyPI), read through its simple repository API in JSON (PEP 691), or its HTML page (PEP 503)
where an index serves no JSON: no list of versions is written into xentbench. Pre-releases and
yanked files are left out; a release counts once one of its wheels' tags is among this
interpreter's (``packaging.tags.sys_tags``) and its ``requires-python`` admits this Python.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, sys_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

PYPI = "https://pypi.org/simple"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
TIMEOUT_S = 60.0

# An index page fetcher: (url) -> (content type, body). Tests give a fake one.
Fetch = Callable[[str], tuple[str, bytes]]


@dataclass(frozen=True)
class IndexFile:
    """One file of a project's index page."""

    filename: str
    requires_python: str = ""
    yanked: bool = False


def index_url() -> str:
    """The index pip installs from: ``PIP_INDEX_URL``, else pip's configured
    ``global.index-url``, else PyPI's simple API."""
    url = os.environ.get("PIP_INDEX_URL", "").strip()
    if not url:
        try:
            got = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            url = got.stdout.strip() if got.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            url = ""
    return (url or PYPI).rstrip("/")


def fetch_url(url: str) -> tuple[str, bytes]:
    """GET ``url`` asking for the JSON form first; returns its content type and body."""
    request = urllib.request.Request(url, headers={"Accept": f"{JSON_TYPE}, text/html;q=0.1"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return response.headers.get("Content-Type", ""), response.read()


def parse_page(content_type: str, body: bytes) -> list[IndexFile]:
    """The files of one project page, JSON (PEP 691) or HTML (PEP 503)."""
    if "json" in content_type:
        data = json.loads(body)
        return [_json_file(entry) for entry in data.get("files", [])]
    text = body.decode("utf-8", "replace")
    files = []
    for attributes, name in re.findall(r"<a\s([^>]*)>([^<]*)</a>", text, flags=re.I):
        requires = re.search(r'data-requires-python="([^"]*)"', attributes)
        files.append(
            IndexFile(
                html.unescape(name.strip()),
                html.unescape(requires.group(1)) if requires else "",
                "data-yanked" in attributes,
            )
        )
    return files


def _json_file(entry: dict[str, Any]) -> IndexFile:
    return IndexFile(
        entry["filename"], entry.get("requires-python") or "", bool(entry.get("yanked"))
    )


def installable_versions(
    project: str,
    files: Iterable[IndexFile],
    tags: Iterable[Tag] | None = None,
    python: str | None = None,
) -> list[str]:
    """The final releases of ``project`` with a wheel for ``tags`` (default: this
    interpreter's) whose ``requires-python`` admits ``python``, oldest first."""
    supported = set(tags if tags is not None else sys_tags())
    python = python or ".".join(map(str, sys.version_info[:3]))
    wanted = canonicalize_name(project)
    found: set[Version] = set()
    for file in files:
        if file.yanked or not file.filename.endswith(".whl"):
            continue
        try:
            name, version, _, file_tags = parse_wheel_filename(file.filename)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if name != wanted or version.is_prerelease or version.is_devrelease:
            continue
        if not supported & set(file_tags) or not _admits(file.requires_python, python):
            continue
        found.add(version)
    return [str(version) for version in sorted(found)]


def _admits(requires_python: str, python: str) -> bool:
    try:
        return not requires_python or python in SpecifierSet(requires_python)
    except InvalidSpecifier:
        return True  # an unreadable constraint: let the installer decide


def releases(project: str, fetch: Fetch | None = None, index: str | None = None) -> list[str]:
    """``project``'s installable final releases on the index, oldest first."""
    url = f"{index or index_url()}/{canonicalize_name(project)}/"
    content_type, body = (fetch or fetch_url)(url)
    return installable_versions(project, parse_page(content_type, body))


def window(versions: list[str], since: str | None, until: str | None) -> list[str]:
    """The releases from ``since`` to ``until`` inclusive (each must be one of them)."""
    for value, flag in ((since, "--since"), (until, "--until")):
        if value is not None and value not in versions:
            raise ValueError(_unknown(value, flag, versions))
    first = versions.index(since) if since else 0
    last = versions.index(until) if until else len(versions) - 1
    if first > last:
        raise ValueError(
            f"--since {since} comes after --until {until}; valid: --since older than --until"
        )
    return versions[first : last + 1]


def _unknown(value: str, flag: str, versions: list[str]) -> str:
    shown = ", ".join(versions[-12:])
    more = f"{len(versions) - 12} older, " if len(versions) > 12 else ""
    return f"{flag} {value!r} is no installable release here; valid: {more}{shown}"


def minor_latest(versions: list[str], count: int) -> list[str]:
    """The newest patch release of each of the last ``count`` minor releases (a grid)."""
    newest: dict[tuple[int, int], str] = {}
    for text in versions:
        version = Version(text)
        newest[(version.major, version.minor)] = text
    return [newest[key] for key in sorted(newest)[-count:]]
