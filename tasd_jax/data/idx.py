"""Reading the idx format of MNIST-style data sets (plain or gzip-compressed).

An idx file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 size per dimension, then the values in
C order, big-endian. `read_idx` checks every part of that layout and names the
file and the broken rule, so a truncated download or a mislabelled file fails
before any example is written.
"""

import gzip
import os

import numpy as np

# The idx type codes and the numpy dtypes they stand for (values are big-endian).
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """A file that is not a well-formed idx file; the message names it."""


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        magic = f.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open  # gzip's own magic number
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as err:  # a gzip stream cut short or corrupted
        raise IdxFormatError(f"{path}: not a readable gzip file ({err}).") from err


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """The array held by the idx bytes `raw` (already decompressed).

    Args:
        raw: the whole file's bytes.
        name: what to call the bytes in errors (a file path).

    Returns:
        An array of the file's shape; multi-byte values converted to native byte
        order.

    Raises:
        IdxFormatError: a bad magic number, an unknown type code, no dimension,
            or a data size that disagrees with the dimensions.
    """
    if len(raw) < 4:
        raise IdxFormatError(f"{name}: {len(raw)} bytes is too short for an idx header (4).")
    if raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError(
            f"{name}: magic number {raw[:4].hex()} does not start with two zero bytes: "
            f"not an idx file.")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise IdxFormatError(
            f"{name}: idx type code 0x{code:02x} is not one of "
            f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}.")
    if ndim == 0:
        raise IdxFormatError(f"{name}: an idx file needs at least one dimension, it declares 0.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(
            f"{name}: {len(raw)} bytes is too short for the header of {ndim} dimensions "
            f"({header}).")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxFormatError(
            f"{name}: shape {shape} of {dtype.name} needs {expected} data bytes, the file "
            f"has {len(raw) - header} (cut short or not this file).")
    values = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array in the idx file at `path` (`.gz` or not: told by its first bytes).

    Raises:
        FileNotFoundError: no file at `path`.
        IdxFormatError: see `parse_idx`; also a corrupted gzip stream.
    """
    path = os.fspath(path)
    return parse_idx(_read_bytes(path), path)
