"""dciodvfy (dicom3tools) as a test oracle: a validator nobody here wrote checks our DICOM files.

``dciodvfy FILE`` checks one object against its IOD and prints, all on stderr, one message
per problem: ``Error - ...`` or ``Warning - ...``, sometimes after the element it is about
(``(0x0019,0x1050)  ?  - Warning - Unrecognized tag ...``), and ``Abort - ...`` where it
cannot read the file at all. The IOD's name ("Segmentation", "USImage", "ComprehensiveSR")
comes on a line of its own, one word, after the checks of the file as a whole and before
those of the IOD's modules. A message whose value holds line breaks (a private XML blob)
goes on over the following lines. The exit status is 0 with warnings only.

Debian package ``dicom3tools``; ``make pacs`` installs it. A test that runs it is skipped
where it is missing (failed under ``make test``: ``tests.support.external``).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.external import require_program

# "Error - ...", "Warning - ...", "Abort - ...", alone or after "(0xGGGG,0xEEEE) VR - ".
_MESSAGE = re.compile(
    r"^(?:\(0x[0-9a-fA-F]{4},0x[0-9a-fA-F]{4}\)[^\n]*? - )?(Error|Warning|Abort) - "
)
_IOD = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")  # the IOD's name: one word on its line
_SHOWN = 300  # characters of a message shown in a failure (a private XML value runs long)

# Warnings dciodvfy gives on our SEG and SR that are not ours to fix. Each is matched as a
# substring of the whole message.
ALLOWED_WARNINGS: dict[str, str] = {
    # The source's Patient's Name, copied unchanged into the SEG/SR (it belongs to the
    # patient's record, not ours to rewrite): pydicom's ybr_color example has "PLA", which
    # dciodvfy reads as the retired (pre-1993) PN form without "^" separators.
    "Retired Person Name form": "the source's Patient's Name, copied unchanged",
    # The source's Patient's Size and Weight ("0.000000" in pydicom's rgb_color and jpeg2k
    # examples), copied with the Patient Study module as highdicom does: a scanner's "not
    # entered"; legal DS values, the patient's record, not ours to change.
    "Value is zero for value 1 of attribute <Patient's Size>": "the source's, copied",
    "Value is zero for value 1 of attribute <Patient's Weight>": "the source's, copied",
}

# Warnings on an anonymised source only: its anonymiser emptied or dropped the patient and
# study identifiers; we write them empty (Type 2). A DICOMDIR needs them, but an archive
# assigns its own; dciodvfy says so for each one.
ANONYMISED_WARNINGS: dict[str, str] = {
    "Missing attribute or value that would be needed to build DICOMDIR": (
        "Type 2 patient/study identifiers the anonymiser emptied, written empty"
    ),
}


@dataclass(frozen=True)
class Verdict:
    """What dciodvfy said about one file: the IOD it checked against and its messages."""

    path: Path
    iod: str
    errors: list[str] = field(default_factory=list)  # "Error - ..." and "Abort - ..." messages
    warnings: list[str] = field(default_factory=list)
    output: str = ""


def parse(path: Path, output: str) -> Verdict:
    """dciodvfy's output split into the IOD line and its Error and Warning messages."""
    iod, messages = "", []
    for line in output.splitlines():
        match = _MESSAGE.match(line)
        if match:
            messages.append([match.group(1), line])
        elif not iod and _IOD.match(line):
            iod = line
        elif messages:  # a value running over several lines: part of the message before
            messages[-1][1] += "\n" + line
    errors = [text for kind, text in messages if kind in ("Error", "Abort")]
    warnings = [text for kind, text in messages if kind == "Warning"]
    return Verdict(Path(path), iod, errors, warnings, output)


def dciodvfy(path: Path) -> Verdict:
    """Run ``dciodvfy path`` and split what it says."""
    done = subprocess.run(
        [require_program("dciodvfy", "dicom3tools"), str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        check=False,
    )
    # It writes its messages to stderr; stdout is read too, in case a build differs.
    return parse(Path(path), done.stderr + done.stdout)


def _shown(message: str) -> str:
    one = " | ".join(message.splitlines())
    return one if len(one) <= _SHOWN else one[:_SHOWN] + "..."


def unexpected_warnings(verdict: Verdict, allowed: Iterable[str]) -> list[str]:
    """The warnings that match none of the ``allowed`` substrings."""
    allowed = list(allowed)
    return [w for w in verdict.warnings if not any(a in w for a in allowed)]


def assert_dciodvfy_clean(
    path: Path,
    allowed_warnings: Iterable[str] = ALLOWED_WARNINGS,
    iod: str | None = None,
) -> Verdict:
    """Fail listing every Error line, and every Warning not in ``allowed_warnings``
    (substrings of the message; see ALLOWED_WARNINGS for why each is left).

    ``iod``: the IOD dciodvfy must have checked the file against ("Segmentation", ...).
    """
    verdict = dciodvfy(Path(path))
    problems = [f"  {_shown(e)}" for e in verdict.errors]
    problems += [
        f"  (not allowed) {_shown(w)}" for w in unexpected_warnings(verdict, allowed_warnings)
    ]
    if iod is not None and verdict.iod != iod:
        problems.insert(0, f"  checked as IOD {verdict.iod!r}, not {iod!r}")
    if problems:
        pytest.fail(f"dciodvfy {path}:\n" + "\n".join(problems), pytrace=False)
    return verdict
