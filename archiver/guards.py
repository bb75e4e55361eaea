"""The guards every surface passes through: one for each file the tool writes, one
for each user file it reads, one masker for secrets, one escaper for server text.

Why one place: each new surface of round 2 re-implemented or forgot a guard an older
one had (``--metrics-file`` replaced the archive; ``--config`` hung on a FIFO;
``?password=`` was printed). A surface that writes, reads, prints a secret or prints
what a server sent calls these, and is safe by construction.
"""

import gzip
import io
import os
import re
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO, cast

from archiver.errors import UsageError, WorkFailed

# --- secrets ------------------------------------------------------------------------------

#: scheme://user:password@ — the password runs to the '@' ('/' too), as SQLAlchemy reads it.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*):(?P<secret>[^\s@]+)@")
#: password=… in a URL's query (?password=, &password=) or a libpq DSN (password=… or
#: password='…'), and the session tokens a presigned or proxied URL may carry.
_KEYED = re.compile(
    r"(?i)(?P<head>\b(?:password|passwd|x-amz-security-token|x-amz-signature|"
    r"security[-_]?token|session[-_]?token)\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|"
    r"[^\s&;'\"]+?(?=:?(?:[\s&;'\"]|$)))"  # a ':' ending it is the message's ("…=x: refused")
)


def redact(text: str) -> str:
    """``text`` with every secret in it replaced by ``***``: a URL's password, a
    ``password=`` in a query string or DSN, a session token."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:***@", text)
    return _KEYED.sub(lambda m: f"{m['head']}***", text)


def mask_url(url: str | None) -> str:
    """One URL as it may be shown or stored: its secrets masked."""
    return redact(url) if url else ""


# --- server text --------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text a server sent, as it may meet a terminal: every control character (ESC, a
    line break, …) escaped, so that it can neither move the cursor nor forge a line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


#: What CSV and JSON shown on a terminal must not carry: ``_CONTROL`` but tab and line
#: ends (CR LF ends a CSV line; a lone CR would write over one).
_ON_SCREEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")


class _Escaping(io.TextIOBase):
    """A text stream onto ``out`` (every method of one: ``writelines`` too) escaping what
    ``_ON_SCREEN`` names as JSON does (``\\u001b``)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write(_ON_SCREEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def shown(out: TextIO, *, on: IO[Any] | None = None) -> TextIO:
    """``out``, escaping on a terminal (``on``, by default ``out``): CSV and JSON are data
    for a file or a pipe, where they stay exact, and shown they must not move the cursor."""
    return cast(TextIO, _Escaping(out)) if (on or out).isatty() else out


def excerpt(text: str, limit: int = 40) -> str:
    """Server text quoted in a message, on one line and at most ``limit`` characters and
    "…": a proxy's 403 page was a 100 kB error line, its stored error only "<html>"."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# --- files the tool writes ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a write lands (a symlink followed to its file), the option that named it,
    and the mode and owner an existing file keeps."""

    path: Path
    flag: str
    mode: int | None
    owner: tuple[int, int] | None = None  # (uid, gid), kept when root writes (hand_over)


def target(path: Path, *, flag: str, protected: Sequence[Path] = (),
           owner_of: Path | None = None) -> Target:  # fmt: skip
    """Refuse a path whose writing would destroy something, before any work (exit 2):
    any of ``protected`` (the archive and its -wal/-shm/-journal, compared by device and
    inode, or by name while not made yet), a directory, a device, a FIFO, a socket, a
    symlink to nothing or to one of those, an unwritable file or directory, /dev/stdout or
    any other name of a process's file (it resolves to whatever stdout is). A new file
    root writes goes to ``owner_of``'s owner."""
    if str(path) in ("", ".", "..", "-"):  # "-" made a file of that name: stdout is no --out
        raise UsageError(f"{flag} needs a file name, not {str(path)!r}")
    if (size := len(os.fsencode(path.name))) > 238:  # 255 less the temporary file's additions
        raise UsageError(f"{flag}: the file name {path.name[:20]}… is {size} bytes; 238 fit")
    if re.match(r"/(proc/|dev/fd/|dev/std(in|out|err)$)", os.path.abspath(path)):  # fd links
        raise UsageError(f"{flag} {path} names a process's file; name a regular file")
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    if path.is_symlink() and not real.exists():
        raise UsageError(f"{flag} {path} is a symlink to nothing ({real})")
    st = real.stat() if real.exists() else None  # one look: the checks, mode and owner
    if st is not None:
        if kind := irregular(st.st_mode):
            raise UsageError(f"{flag} {path} is {kind}")
        if any(_same_file(st, p) for p in protected):
            raise UsageError(f"{flag} {path} is the archive itself; choose another file")
        if not os.access(real, os.W_OK):
            raise UsageError(f"{flag} {path} exists and is not writable")
    if os.path.abspath(real) in {os.path.abspath(p) for p in protected}:
        raise UsageError(f"{flag} {path} is one of the archive's own files; choose another")
    parent = real.parent if str(real.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: directory {parent} is not writable")
    if st is None:
        return Target(real, flag, None, owner(owner_of))
    return Target(real, flag, stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid))


def owner(path: Path | None) -> tuple[int, int] | None:
    """A file's (uid, gid), or None when there is none."""
    try:
        return (st := os.stat(path or "")).st_uid, st.st_gid
    except OSError:
        return None


def hand_over(fd: int, to: tuple[int, int] | None) -> None:
    """A file root writes goes to ``to``, as SQLite gives its -wal and -shm to the
    archive's owner: a `sudo archiver sync` once must not leave a lock or a metrics
    file that the owner's cron may not replace. Best effort (NFS may refuse)."""
    if to is not None and os.geteuid() == 0:
        with suppress(OSError):
            os.fchown(fd, *to)


@contextmanager
def replacing(t: Target) -> Iterator[BinaryIO]:
    """A file to write ``t`` through: a temporary file beside it, fsynced and renamed into
    place when the block ends, removed if it raises (SIGTERM included): it appears whole or
    not at all, keeps an existing file's mode, and a write refused (a full disk) names it."""
    _remove_stale_partials(t.path)
    tmp = t.path.with_name(f".{t.path.name}.partial-{os.getpid()}")
    try:  # a stop the moment the file is made still removes it
        with os.fdopen(open_in_place(tmp, what=f"{t.flag}'s temporary file", new=True), "wb") as fh:
            if t.mode is not None:
                os.fchmod(fh.fileno(), t.mode)  # 0600 stays 0600
            hand_over(fh.fileno(), t.owner)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, t.path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a write's: no file named
            raise WorkFailed(f"{t.flag} {t.path} was not written: {exc.strerror or exc}") from None
        raise


def open_in_place(path: Path, *, what: str, new: bool = False) -> int:
    """A file written where it is (a lock beside the archive; ``new``: the temporary file
    a write is renamed from), as a descriptor: never through a symlink, which another
    user may have planted there to have us truncate its target, and a regular file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (os.O_EXCL if new else 0), 0o666)  # as open(), less umask
    except OSError as exc:
        why = "is a symlink" if os.path.islink(path) else f"cannot be written: {exc.strerror}"
        raise UsageError(f"{what} {path} {why}") from None
    return _regular(fd, path, what=what)


def named_gz(path: Path) -> bool:
    """Whether a file's name asks for gzip (``.gz``, any case)."""
    return path.suffix.lower() == ".gz"


def write_file(t: Target, data: bytes) -> None:
    """``data`` at ``t``, complete or not at all; gzipped when its name ends in .gz."""
    with replacing(t) as fh:
        if named_gz(t.path):
            with gzip.GzipFile(filename=t.path.name[:-3], mode="wb", fileobj=fh, mtime=0) as gz:
                gz.write(data)
        else:
            fh.write(data)


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs; when unsure (one we may not signal),
    it does: its lock record is kept, and its temporary file too."""
    try:
        os.kill(pid, 0)
        return True
    except OSError as exc:
        return not isinstance(exc, ProcessLookupError)


def _same_file(st: os.stat_result, path: Path) -> bool:
    try:
        return os.path.samestat(st, os.stat(path))  # the same device and inode
    except OSError:
        return False


def _remove_stale_partials(target: Path) -> None:
    """Temporary files of earlier writes to the same path whose process is gone (a
    SIGKILL leaves them): tens of megabytes that nothing else would remove. One named
    with our own pid is an earlier process's too (a container starts each run afresh)."""
    for tmp in target.parent.glob(f".{target.name}.partial-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not pid_alive(int(pid))):
            tmp.unlink(missing_ok=True)


# --- files the tool reads -----------------------------------------------------------------

#: The most a user's file (a config, a filter file) may hold.
READ_LIMIT = 1_000_000


def read_text(path: str | Path, *, what: str, flag: str = "") -> str:
    """A user's file (``read_bytes``) as UTF-8 text."""
    try:  # a BOM (Notepad's) is dropped
        return read_bytes(path, what=what, flag=flag).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text") from None


def read_bytes(path: str | Path, *, what: str, flag: str = "", limit: int = READ_LIMIT) -> bytes:
    """A user's file: a regular file only, opened without blocking (a FIFO or a device
    is refused, never waited on), at most ``limit`` bytes. The name comes as typed: an
    empty one ("$VAR" unset; a Path makes it ".") is refused, naming ``flag``."""
    if not str(path).strip():
        raise UsageError(f"the {what}'s name is empty" + (f" ({flag})" if flag else ""))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    with os.fdopen(_regular(fd, path, what=what), "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{what} {path} is larger than {limit:,} bytes")
    return data


def _regular(fd: int, path: str | Path, *, what: str) -> int:
    """``fd`` if it is a regular file's; else it is closed and refused (exit 2)."""
    if kind := irregular(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{what} {path} is {kind}")
    return fd


def irregular(mode: int) -> str | None:
    """What a file that is no regular one is, as a refusal says it (None: regular): the
    one rule for every file the tool reads, writes or opens as the archive."""
    other = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
    return None if stat.S_ISREG(mode) else other
