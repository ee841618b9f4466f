"""The plugin's command-line options and ini keys, and the session-wide settings they make.

Options start with ``--flops-``, ini keys with ``flops_``; a value on the
command line wins over the ini file, which wins over the default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import pytest

from pytest_flops.plugin.budget import Comparison
from pytest_flops.roofline import GPUS
from pytest_flops.units import parse_depth, parse_rtol

# GPT2LMHeadModel.transformer.h.0.mlp.c_fc and LlamaForCausalLM.model.layers.0.mlp.up_proj
# are 6 deep: a change in one projection of a stock Hugging Face model names it
DEFAULT_DEPTH = 6
DEFAULT_RTOL = 0.0

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The session-wide options, after CLI > ini > default."""

    update: bool = False
    prune: bool = False
    rtol: float = DEFAULT_RTOL
    depth: int = DEFAULT_DEPTH
    report: bool = False
    report_json: Path | None = None
    report_md: Path | None = None
    report_html: Path | None = None
    bytes_gate: bool = True  # compare bytes accessed
    bytes_rtol: float | None = None  # None: rtol's
    gpu: str | None = None  # --flops-gpu: the reports estimate the time on it

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        return cls(
            update=config.getoption("flops_update"),
            prune=config.getoption("flops_prune"),
            rtol=_value_or_ini(config, "flops_rtol", parse_rtol, DEFAULT_RTOL, kind="float"),
            depth=_value_or_ini(config, "flops_depth", parse_depth, DEFAULT_DEPTH, kind="int"),
            report=config.getoption("flops_report"),
            report_json=_path(config, "flops_report_json"),
            report_md=_path(config, "flops_report_md"),
            report_html=_path(config, "flops_report_html"),
            bytes_gate=_bytes_gate(config),
            bytes_rtol=_value_or_ini(config, "flops_bytes_rtol", parse_rtol, None, kind="float"),
            gpu=_gpu(config),
        )

    def bytes_comparison(self, chosen: Comparison, *, rtol: float) -> tuple[float, bool]:
        """The tolerance of bytes (the FLOPs' ``rtol`` unless one was given) and whether
        bytes accessed are compared, for a test whose ``@pytest.mark.flops`` chose
        ``chosen``."""
        bytes_rtol = self.bytes_rtol if chosen.bytes_rtol is None else chosen.bytes_rtol
        compared = self.bytes_gate if chosen.bytes is None else chosen.bytes
        return rtol if bytes_rtol is None else bytes_rtol, compared


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("flops", "FLOP-count snapshots (pytest-flops)")
    _add_gate_options(group)
    _add_report_options(group)
    _add_ini_keys(parser)


def _add_gate_options(group: pytest.OptionGroup) -> None:
    """What is written, removed, and compared how."""
    group.addoption(
        "--flops-update",
        action="store_true",
        default=False,
        help="Write missing FLOP snapshots and rewrite changed ones. Never removes a file "
        "nor drops a measurement from one (see --flops-prune), and never touches syrupy's "
        "snapshots.",
    )
    group.addoption(
        "--flops-prune",
        action="store_true",
        default=False,
        help="Remove stale FLOP snapshots, and stale named measurements from snapshots, "
        "only on positive evidence that their tests are gone or no longer measure; a run "
        "that does not cover the whole suite removes nothing. Alone or with --flops-update.",
    )
    group.addoption(
        "--flops-rtol",
        metavar="R",
        type=_command_line(parse_rtol),
        default=None,
        help=f"Relative tolerance of FLOP snapshot comparisons (ini: flops_rtol; "
        f"default {DEFAULT_RTOL:g}, exact).",
    )
    group.addoption(
        "--flops-depth",
        metavar="N",
        type=_command_line(parse_depth),
        default=None,
        help=f"Deepest module level kept in FLOP snapshots (ini: flops_depth; "
        f"default {DEFAULT_DEPTH}).",
    )
    group.addoption(
        "--flops-bytes",
        choices=("on", "off"),
        default=None,
        help="Compare bytes accessed with the snapshot (on, the default) or not (off: "
        "still stored) (ini: flops_bytes).",
    )
    group.addoption(
        "--flops-bytes-rtol",
        metavar="R",
        type=_command_line(parse_rtol),
        default=None,
        help="Relative tolerance of bytes-accessed comparisons (ini: flops_bytes_rtol; "
        "default: the FLOP tolerance).",
    )


def _add_report_options(group: pytest.OptionGroup) -> None:
    group.addoption(
        "--flops-report",
        action="store_true",
        default=False,
        help="Print a table of every measured test's FLOPs and change at the end of the session.",
    )
    group.addoption(
        "--flops-report-json",
        metavar="PATH",
        default=None,
        help="Write every measurement, its snapshot and the deltas to PATH as JSON.",
    )
    group.addoption(
        "--flops-report-md",
        metavar="PATH",
        default=None,
        help="Write the FLOPs report to PATH as Markdown (e.g. for $GITHUB_STEP_SUMMARY).",
    )
    group.addoption(
        "--flops-report-html",
        metavar="PATH",
        default=None,
        help="Write the FLOPs report to PATH as one self-contained HTML page, with an "
        "icicle of each measured test's module tree.",
    )
    group.addoption(
        "--flops-gpu",
        metavar="NAME",
        default=None,
        help=f"Add each test's and module's roofline time on the GPU NAME to the report and "
        f"exports (ini: flops_gpu; one of {', '.join(GPUS)}).",
    )


def _add_ini_keys(parser: pytest.Parser) -> None:
    parser.addini(
        "flops_bytes",
        "Compare bytes accessed with the snapshot (default true).",
        type="bool",
        default=None,
    )
    parser.addini(
        "flops_bytes_rtol",
        "Relative tolerance of bytes-accessed comparisons (default: flops_rtol's).",
        type="float",
        default=None,
    )
    parser.addini(
        "flops_gpu",
        "The GPU the reports estimate each test's roofline time on (default: none).",
        default=None,
    )
    parser.addini(
        "flops_rtol",
        f"Relative tolerance of FLOP snapshot comparisons (default {DEFAULT_RTOL:g}).",
        type="float",
        default=None,
    )
    parser.addini(
        "flops_depth",
        f"Deepest module level kept in FLOP snapshots (default {DEFAULT_DEPTH}).",
        type="int",
        default=None,
    )


def _value_or_ini(
    config: pytest.Config,
    name: str,
    parse: Callable[..., T],
    default: T,
    *,
    kind: Literal["float", "int"],
) -> T:
    """The option's value if given on the command line, else the ini key's, else ``default``.

    The ini key accepts a native TOML number (``[tool.pytest]``) or text
    (``pytest.ini``, ``[tool.pytest.ini_options]``).
    """
    value = config.getoption(name)
    if value is not None:
        return value
    try:
        raw = config.getini(name)
    except (TypeError, ValueError, pytest.UsageError) as error:
        # pytest 9.2 reports a value of the wrong type itself, as a UsageError
        # that does not name the key when the file was pytest.ini
        expected = "a number >= 0" if kind == "float" else "an integer >= 0"
        raise pytest.UsageError(f"ini option {name}: expected {expected} ({error})") from None
    if raw is None:
        return default
    try:
        return parse(raw, source=f"ini option {name}")
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def _bytes_gate(config: pytest.Config) -> bool:
    """``--flops-bytes=on|off``, else the ini key ``flops_bytes``, else on."""
    value = config.getoption("flops_bytes")
    if value is not None:
        return bool(value == "on")
    try:
        raw = config.getini("flops_bytes")
    except (TypeError, ValueError, pytest.UsageError) as error:
        raise pytest.UsageError(
            f"ini option flops_bytes: expected true or false ({error})"
        ) from None
    return True if raw is None else bool(raw)


def _gpu(config: pytest.Config) -> str | None:
    """``--flops-gpu``, else the ini key ``flops_gpu``; an unknown name is a usage error."""
    name, source = config.getoption("flops_gpu"), "--flops-gpu"
    if name is None:
        name, source = config.getini("flops_gpu") or None, "ini option flops_gpu"
    if name is not None and name not in GPUS:
        known = ", ".join(GPUS)
        raise pytest.UsageError(f"{source}: unknown GPU {name!r}: expected one of {known}")
    return name


def _command_line(parse: Callable[..., T]) -> Callable[[str], T]:
    def read(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    read.__name__ = parse.__name__  # argparse names the type in some messages
    return read


def _path(config: pytest.Config, name: str) -> Path | None:
    """A path option, relative to where pytest was invoked (a test may chdir)."""
    value = config.getoption(name)
    return None if value is None else config.invocation_params.dir / value
