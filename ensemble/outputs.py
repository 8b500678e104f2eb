"""Outputs that are whole or absent, checked before any work starts.

Every command that writes checks its output path first (`check_folder`, `check_file`), so a typo
costs no minutes of computing. Results are written into a fresh temporary folder or file beside
the target and swapped in at the end (`replace_folder`, `replace_file`): a re-used ``--out``
holds only the new run, a crash or an error leaves the old one (and no temporary) behind, and
what appears has the permissions the user's umask gives new files, as if written directly.

The stated rule for replacing: a folder is replaced when it is empty or was written by the same
command (it holds its ``.ensemble`` marker, or the command's result file from before markers);
any other folder is refused, never emptied. A file is replaced only with ``--force``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ensemble.errors import EnsembleError

MARKER = ".ensemble"  # {"command": ...}: which command wrote a folder, so a re-run may replace it


def _umask() -> int:
    """The process umask, read without changing it where /proc says (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _writable_ancestor(path: Path, option: str) -> Path:
    """The nearest existing folder at or above ``path``; refuses files and unwritable folders."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise EnsembleError(
            f"{option} '{path}' cannot be created because '{probe}' is a file; choose another "
            "path."
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise EnsembleError(
            f"{option} '{path}' cannot be written: no write permission in '{probe}'; choose a "
            "folder you can write to."
        )
    return probe


def _written_by(folder: Path, command: str, result_file: str | None) -> bool:
    try:
        return json.loads((folder / MARKER).read_text())["command"] == command
    except (OSError, ValueError, KeyError, TypeError):
        return result_file is not None and (folder / result_file).is_file()


def check_writable(path: str | Path, option: str = "--out") -> Path:
    """Refuse a folder path that is a file or that cannot be created or written beside."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise EnsembleError(f"{option} '{folder}' is a file; give a folder for the results.")
    _writable_ancestor(folder.absolute().parent, option)  # temporaries are made beside it
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise EnsembleError(
            f"{option} '{folder}' cannot be written (no permission); choose a folder you can "
            "write to."
        )
    return folder


def check_folder(
    path: str | Path, *, option: str = "--out", command: str, result_file: str | None = None
) -> Path:
    """Refuse, before any work, an output folder that cannot be written or must not be replaced.

    Args:
        path: the folder to create or replace.
        option: how the user named it, for messages.
        command: the command writing it (the marker a later run checks).
        result_file: a file that marks the command's output from before markers existed.

    Raises:
        EnsembleError: a file, an unwritable place, or a folder holding other things.
    """
    folder = check_writable(path, option)
    if folder.is_dir() and any(folder.iterdir()) and not _written_by(folder, command, result_file):
        raise EnsembleError(
            f"{option} '{folder}' already holds files that `{command}` did not write; choose a new "
            "or empty folder (a folder written by an earlier run is replaced)."
        )
    return folder


def check_file(path: str | Path, *, option: str = "--out", force: bool = False) -> Path:
    """Refuse, before any work, an output file that cannot be written or exists (without force)."""
    target = Path(path)
    if target.is_dir():
        raise EnsembleError(f"{option} '{target}' is a folder; give a file name.")
    if target.exists() and not force:
        raise EnsembleError(
            f"{option} '{target}' already exists; pass --force to replace it or choose another "
            "name."
        )
    _writable_ancestor(target.absolute().parent, option)
    return target


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    libc_name = ctypes.util.find_library("c")
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _swap_in(new: Path, target: Path) -> None:
    if not target.exists():
        new.rename(target)
        return
    if _exchange(new, target):
        shutil.rmtree(new)  # now the old contents
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
    target.rename(old / target.name)
    new.rename(target)
    shutil.rmtree(old)


@contextmanager
def replace_folder(path: str | Path, *, command: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path`` (the old
    folder is removed), on any error it is removed and ``path`` is left as it was."""
    target = Path(path).resolve()  # through a symlink: the folder it names is replaced
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
        (tmp / MARKER).write_text(json.dumps({"command": command}) + "\n")
        yield tmp
        _swap_in(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def replace_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it replaces ``path`` with the
    umask's permissions (not mkstemp's 0600), on any error it is removed."""
    target = Path(path)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.chmod(0o666 & ~_umask())
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
