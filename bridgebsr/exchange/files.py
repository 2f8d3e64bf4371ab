"""Output files written whole: through a temporary file in the same folder, then swapped in,
so a reader never sees half a file and a failure leaves the old one as it was."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bridgebsr.errors import InvalidInput


@contextmanager
def replacing(path: Path, *, make_folder: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` to write to; swapped in when the block succeeds.

    The file keeps the replaced file's permissions, else gets what the umask gives a new file
    (not mkstemp's 0600). OS errors become one clear line naming `--out`."""
    folder = path.parent
    if make_folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"--out {path}: cannot create {folder} ({_why(exc)})") from None
    if not folder.is_dir():
        raise InvalidInput(f"--out {path}: folder {folder} does not exist; create it first")
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=folder
        )
    except OSError as exc:
        raise InvalidInput(f"--out {path}: cannot write in {folder} ({_why(exc)})") from None
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        with temp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temp, _mode(path))
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise InvalidInput(f"--out {path}: cannot write it ({_why(exc)})") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole."""
    with replacing(path) as temp:
        temp.write_bytes(data)


def _mode(path: Path) -> int:
    """The replaced file's permissions, else what the umask gives a new file."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
