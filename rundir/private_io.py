"""Opening files and folders of a run directory safely: owner-only, never through a link, never someone else's.

The engine writes into a directory other users may be able to reach; every open
here refuses a symbolic link, a file another user owns or can write, and (for
writing) a file with other hard links, and creates files and folders owner-only
(group-readable under group access).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from grpo_tui.rundir.errors import UnsafeRunDir

# "1": run directories are created 0750 and files 0640, and group members may share the run (they still
# can't write to it). Set by `python -m grpo_tui.engine train --group-access` (and inherited by re-executions).
GROUP_ACCESS_ENV = "GRPO_TUI_GROUP_ACCESS"


def group_access() -> bool:
    return os.environ.get(GROUP_ACCESS_ENV) == "1"


def dir_mode() -> int:
    return 0o750 if group_access() else 0o700


def file_mode() -> int:
    return 0o640 if group_access() else 0o600


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def ownership_problem(st: os.stat_result, path: Path, what: str, *, allow_root: bool = False) -> str | None:
    """Why a file or directory with this stat must not be trusted by this user, or None.

    Trusted: owned by us (or by root when allow_root, for installed files) and
    writable by nobody else (a group other than our primary group may write only
    under group access).
    """
    me = os.geteuid()
    if st.st_uid != me and not (allow_root and st.st_uid == 0):
        return (
            f"{what} {path} belongs to {_owner(st.st_uid)}, not to you ({_owner(me)}); the engine only uses "
            f"{what}s you own: copy it, or choose a path of your own."
        )
    # Group write is fine for your own primary group (a user-private group under umask 002, as on Ubuntu)
    # and under group access; any other group could change the file behind your back.
    group_ok = group_access() or st.st_gid == os.getegid()
    others = 0o002 if group_ok else 0o022
    if stat.S_IMODE(st.st_mode) & others and not stat.S_ISLNK(st.st_mode):
        who = "other users" if st.st_mode & 0o002 else "its group"
        return f"{what} {path} can be written by {who}; make it yours alone: chmod go-w {path}"
    return None


def trusted_file_problem(path: Path | str, what: str = "file") -> str | None:
    """Why code or config from `path` (a reward file, a preset) must not run as this user, or None."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        return f"{what} {path}: {e.strerror}"
    return ownership_problem(st, path, what, allow_root=True)


def link_refused(path: Path, what: str | None = None) -> UnsafeRunDir:
    """The refusal of a symbolic link met inside a run directory, naming the link and the fix."""
    return UnsafeRunDir(
        f"{f'{what} ' if what else ''}{path} is a symbolic link; the engine never follows links inside a run "
        f"directory: remove the link ({path}) and start again."
    )


def check_private_dir(path: Path, what: str, *, follow: bool = False) -> None:
    """Raise UnsafeRunDir unless `path` is a directory we own that others cannot write.

    `follow` allows the path itself to be a symbolic link (a run directory the user
    named through a link); entries inside a run directory are never followed.
    """
    st = os.stat(path) if follow else os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise link_refused(path, what)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRunDir(f"{what} {path} is not a directory; remove it or choose another --run-dir.")
    problem = ownership_problem(st, path, what)
    if problem:
        raise UnsafeRunDir(problem)


def make_private_dir(path: Path, what: str, *, follow: bool = False) -> None:
    """Create `path` owner-only (0700, 0750 with group access) unless it exists, then check it."""
    try:
        os.mkdir(path, dir_mode())
    except FileExistsError:
        pass
    check_private_dir(path, what, follow=follow)


def open_regular(path: Path, *, follow: bool = True) -> int | None:
    """A read-only descriptor of a regular file, or None when it is missing or not a regular file: a FIFO
    planted in a run directory would block a reader forever, so it is opened non-blocking and never read.
    Without `follow`, a symbolic link raises OSError (ELOOP) like any other failed open."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def open_private(path: Path, flags: int, what: str = "file") -> int:
    """os.open without following a symbolic link; new files are 0600 (0640 with group access).

    Refuses (UnsafeRunDir) a link, something not a regular file, a file another
    user owns or can write, and a file with other hard links (writing it would
    change a file elsewhere).
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, file_mode())
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise link_refused(path, what) from None
        raise
    try:
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = f"{what} {path} is not a regular file; remove it and start again."
        elif st.st_nlink > 1 and flags & (os.O_WRONLY | os.O_RDWR):
            problem = f"{what} {path} has other hard links; writing it would change them too: remove it."
        else:
            problem = ownership_problem(st, path, what)
        if problem:
            raise UnsafeRunDir(problem)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: str, what: str = "file") -> None:
    """Replace a file's contents (no link followed, owner-only mode)."""
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, what)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data)


def replace_private(path: Path, data: str, what: str = "file") -> None:
    """Write a whole new version of a file atomically: a private temporary beside it, then rename.
    A reader sees the old file or the new one, never half of one (config.json: start, live knobs)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write_private(tmp, data, f"temporary {what}")
    os.replace(tmp, path)
