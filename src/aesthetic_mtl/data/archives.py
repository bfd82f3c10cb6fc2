"""Release archives: safe zip extraction and joining a split zip's parts.

Archives come from the internet: extraction refuses path traversal, symlinks and zip bombs, and never
leaves half-written files at their final names. A split zip's parts are checked for consecutive
numbering before they are joined, since a missing middle part would still give a plausible file.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterator

from aesthetic_mtl.errors import DataError, OutputError
from aesthetic_mtl.files import NO_SPACE, atomic_path

CHUNK = 1 << 20      # bytes copied at a time: a multi-GB member never needs memory
MIB = 1 << 20

# -------------------------------------------------------------------------------------- extraction

def safe_extract_zip(zip_path: Path, dest: Path, *, max_total_bytes: int = 64 * 2**30,
                     max_ratio: float = 200.0) -> list[Path]:
    """Extract `zip_path` into `dest`, refusing traversal, symlinks and zip bombs; return the files.

    Members are written to a temporary sibling of `dest` and then renamed into place, so an
    interrupted extraction never leaves a truncated file under a name a rerun would trust.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = [(info, _member_path(zip_path, info, dest)) for info in zf.infolist()]
            _check_bomb(zip_path, [info for info, _ in members], max_total_bytes, max_ratio)
            return _extract_all(zf, zip_path, members, dest)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise DataError(f"{zip_path}: corrupt or unreadable zip archive ({err})") from err


def _extract_all(zf: zipfile.ZipFile, zip_path: Path, members: list[tuple[zipfile.ZipInfo, PurePosixPath]],
                 dest: Path) -> list[Path]:
    """Stage every member in a sibling folder of `dest`, then rename them into place.

    A full disk (quota, file-size limit) is an `OutputError` naming `dest` and the member being written;
    the staging folder is removed whatever happens, so nothing partial stays behind.
    """
    staging, current = None, None
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract.", dir=dest.parent))
        for info, rel in members:
            current = info.filename
            _extract_member(zf, zip_path, info, staging / rel)
        return _move_into_place(members, staging, dest)
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise
        where = f" while writing {current!r} of {zip_path}" if current else ""
        raise OutputError(f"{dest}: not extracted: {os.strerror(err.errno).lower()} in {dest.parent}{where}; "
                          f"nothing was left under this name (the partial extraction was removed): free space "
                          f"there and run again") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _member_path(zip_path: Path, info: zipfile.ZipInfo, dest: Path) -> PurePosixPath:
    """The member's relative path, after refusing anything that could land outside `dest`."""
    name = info.filename.replace("\\", "/")

    def refuse(why: str) -> DataError:
        return DataError(f"{zip_path}: refusing entry {info.filename!r}: {why}")

    if stat.S_ISLNK(info.external_attr >> 16):
        raise refuse("it is a symbolic link")
    if name.startswith("/"):
        raise refuse("absolute path")
    if re.match(r"^[A-Za-z]:", name):
        raise refuse("path with a drive letter")
    rel = PurePosixPath(name)
    if ".." in rel.parts:
        raise refuse("'..' path component")
    if "\x00" in name or not (rel.parts or info.is_dir()):
        raise refuse("empty or invalid name")
    root = dest.resolve()
    if not (root / rel).resolve().is_relative_to(root):
        raise refuse(f"resolves outside {dest}")
    return rel


def _check_bomb(zip_path: Path, infos: list[zipfile.ZipInfo], max_total_bytes: int,
                max_ratio: float) -> None:
    """Refuse archives whose declared sizes or compression ratios say "decompression bomb"."""
    total = sum(info.file_size for info in infos)
    if total > max_total_bytes:
        raise DataError(f"{zip_path}: refusing archive: it declares {total} bytes uncompressed, "
                        f"more than the limit of {max_total_bytes}")
    for info in infos:
        ratio = info.file_size / info.compress_size if info.compress_size else float("inf")
        if info.file_size > MIB and ratio > max_ratio:
            raise DataError(f"{zip_path}: refusing entry {info.filename!r}: compression ratio "
                            f"{ratio:.0f} exceeds {max_ratio:g} (possible zip bomb)")


def _extract_member(zf: zipfile.ZipFile, zip_path: Path, info: zipfile.ZipInfo,
                    out: Path) -> None:
    """Write one member, counting bytes so a lying size header cannot fill the disk."""
    if info.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(out, "wb") as dst:
        for block in _member_blocks(zf, zip_path, info):
            written += len(block)
            if written > info.file_size:
                raise DataError(f"{zip_path}: refusing entry {info.filename!r}: it expands "
                                f"beyond its declared size of {info.file_size} bytes")
            dst.write(block)


def _member_blocks(zf: zipfile.ZipFile, zip_path: Path, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's bytes. A read that fails is a damaged or incomplete archive, named as such: a split zip
    whose part was replaced (by a Git LFS pointer, say) makes zipfile seek before the file's start, a bare
    `OSError: [Errno 22] Invalid argument` otherwise. Errors of the writer are not caught here."""
    try:
        with zf.open(info) as src:
            while block := src.read(CHUNK):
                yield block
    except (OSError, zlib.error, zipfile.BadZipFile, EOFError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err) or type(err).__name__
        raise DataError(f"{zip_path}: corrupt or incomplete zip archive: entry {info.filename!r} cannot be "
                        f"read ({why}); a part or the whole file is damaged or not the release's: delete it "
                        f"and obtain it again") from err


def _move_into_place(members: list[tuple[zipfile.ZipInfo, PurePosixPath]], staging: Path,
                     dest: Path) -> list[Path]:
    """Rename the staged members onto their final names (same filesystem: atomic per file)."""
    extracted = []
    for info, rel in members:
        final = dest / rel
        if info.is_dir():
            final.mkdir(parents=True, exist_ok=True)
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, final)
        extracted.append(final)
    return extracted


# ---------------------------------------------------------------------------------- split archives

def join_parts(parts: list[Path], dest: Path) -> Path:
    """Concatenate split-zip parts (`X.zip.001`, `.002`, ...) in order into `dest`, atomically.

    The numbering is checked because a missing middle part would still give a file of plausible
    size that fails only deep inside extraction.
    """
    parts = [Path(p) for p in parts]
    _check_part_numbers(parts)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
    return Path(dest)


def _check_part_numbers(parts: list[Path]) -> None:
    """Parts must exist, share a stem, and be numbered 1, 2, 3, ... in the given order."""
    if not parts:
        raise DataError("join_parts: no parts given")
    stem = parts[0].name.rsplit(".", 1)[0]
    for expected, part in enumerate(parts, start=1):
        base, _, number = part.name.rpartition(".")
        if not number.isdigit() or base != stem or int(number) != expected:
            raise DataError(f"{part}: parts of {stem} are not consecutively numbered: expected "
                            f"part {expected:03d} at position {expected}, got {part.name}")
        if not part.is_file():
            raise DataError(f"{part}: part {expected} of the split archive {stem} is missing")
