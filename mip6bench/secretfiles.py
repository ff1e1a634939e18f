"""Files and directories that hold secrets (PSKs, keys, RADIUS secrets, agent configs that
carry them): private from their creation, whatever the umask.

    d = private_dir(path)                     # mkdir 0700; an existing one must be ours,
                                              # a directory, closed to group and others
    write_secret_file(path, data)             # new file, 0600 from the open(2) on
    write_secret_file(path, data, replace=True)   # same, then renamed over `path`

A file is opened with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600, so it never exists with
a looser mode (the umask can only take bits away; fchmod then sets exactly 0600 before a
byte is written), and a file or symlink someone left at the path is an error, not
something to write through. `replace` writes a new private file next to the target and
renames it over (atomic; readers see the old or the new content). A directory is made
with mode 0700 and set to exactly 0700 before anything goes into it.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from mip6bench.errors import ParameterError

FILE_MODE = 0o600
DIR_MODE = 0o700
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def private_dir(path: str | os.PathLike) -> Path:
    """`path` as a directory only its owner can enter (created 0700; its parents with the
    default mode). An existing one must be a directory of ours with mode 0700."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass
    else:
        os.chmod(path, DIR_MODE)   # exactly 0700 whatever the umask took (never looser)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise ParameterError(f"{path} is not a private directory (mode 0700, ours)",
                             f"remove it or `chmod 700 {path}`")
    return path


def write_secret_file(path: str | os.PathLike, data: bytes | str, *,
                      replace: bool = False) -> Path:
    """Write `data` to `path`, a file that is 0600 from its creation. Without `replace`
    an existing file or symlink at `path` is an error (FileExistsError)."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else bytes(data)
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if replace else path
    fd = os.open(target, _FLAGS, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(target)
        raise
    os.close(fd)
    if replace:
        os.replace(target, path)
    return path
