"""Files and folders that appear whole or not at all: written under a temporary name, flushed, then
renamed into place (one atomic rename on the same file system). Used for configs, worker files,
checkpoints, final outputs and exports, so a reader, a crash or a full disk never leaves half a file
that looks complete."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

STAGING_PREFIX = ".saving-"


def write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file beside it and one rename."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Push every file (and the folders holding them) to disk before a rename makes them visible."""
    for root, _dirs, names in os.walk(folder):
        for n in names:
            fd = os.open(os.path.join(root, n), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def umask() -> int:
    """This process's umask (read from /proc, so it is never changed, even for a moment)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def follow_umask(folder: Path) -> None:
    """Give every file and folder under `folder` the mode a plain open() / mkdir() would (0644 / 0755 under
    the usual umask 022). Some writers (safetensors through a temporary file, tempfile.mkdtemp) leave 0600 /
    0700, so one weights file of an output could not be read by the group or others while the rest could."""
    mask = umask()
    for root, dirs, names in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for n in names:
            p = os.path.join(root, n)
            if not os.path.islink(p):
                os.chmod(p, 0o666 & ~mask)


def publish(src: Path, dst: Path, durable: bool = True) -> None:
    """Make the complete folder `src` appear as `dst` in one rename. An older `dst` is moved aside first and
    removed after, so `dst` is never missing for long and never half old, half new. durable=True flushes
    every file to disk first (checkpoints: a power loss after the rename must not leave empty files). Its
    files get the modes of the user's umask, like every other file a run writes."""
    src, dst = Path(src), Path(dst)
    follow_umask(src)
    if durable:
        fsync_tree(src)
    old = None
    if dst.exists():
        old = dst.with_name(f"{STAGING_PREFIX}old-{dst.name}-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        dst.rename(old)
    src.rename(dst)
    if durable:
        fsync_dir(dst.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
