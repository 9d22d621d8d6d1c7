"""Check ``.mla`` files against the specification and report every problem.

:func:`validate_file` never raises for a bad file: it returns a :class:`Report`
listing each problem with its location and its code (the codes of
:mod:`mlarray.errors`, and for header problems the kinds of
:data:`mlarray.models.PROBLEM_KINDS`). By default the check is *deep*: the digest is
verified and every chunk stored with blocks decompressed (special entries and
special-value chunks are settled by their checks, spec 4.4.3), so "valid" means the whole
file loads; ``deep=False`` reads only the frame structure and the header.

Out of core: the deep check streams. The chunk checks read one chunk at a time, each
chunk is decompressed on its own (the frame is read through the file, not memory-mapped)
and the digest is computed over 4 MiB reads, so peak memory is about two chunks
(compressed and decompressed) plus 4 MiB, whatever the size of the file; a chunk of one
value is never expanded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlarray.errors import FrameMismatchError, HeaderEncodingError, HeaderValidationError, MLArrayError, Problem
from mlarray.models import Meta, parse_header
from mlarray.storage import decode_header, inspect_frame, open_frame, read_header, verify_digest
from mlarray.storage.chunks import DataSection
from mlarray.storage.frame import FrameInfo


@dataclass
class Report:
    """Result of validating one file."""

    path: str
    problems: list[Problem] = field(default_factory=list)
    header: dict[str, Any] | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def code(self) -> str | None:
        """The error code of the first problem (``None`` when valid)."""
        return self.problems[0].code if self.problems else None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "valid": self.valid,
            "code": self.code,
            "problems": [{"loc": p.loc, "code": p.code, "message": p.message} for p in self.problems],
        }


def _problems_of(exc: MLArrayError) -> list[Problem]:
    if isinstance(exc, HeaderValidationError):
        return [
            Problem(f"header.{p.loc}" if p.loc else "header", exc.code, f"{p.message} [{p.code}]") for p in exc.problems
        ]
    return [Problem("file", exc.code, str(exc))]


Progress = Callable[[int, int], None]
"""``progress(done, total)``: called as deep validation goes (chunk checks, each chunk, the digest)."""


def validate_file(path: str | os.PathLike[str], *, deep: bool = True, progress: Progress | None = None) -> Report:
    """Validate one file: frame, header encoding, schema, semantic rules; and, ``deep`` (the default),
    the integrity digest and every chunk.

    Parameters
    ----------
    path : path
        The ``.mla`` file.
    deep : bool
        ``False`` reads only the frame structure (the chunk index included) and the header,
        never the array data.
    progress : callable, optional
        ``progress(done, total)`` after the structural chunk checks, after each chunk and after
        the digest (deep only).
    """
    p = os.fspath(path)
    report = Report(path=p)
    try:
        head = read_header(p)
        report.header = head.meta.model_dump(mode="json")
        if deep:  # spec 8, steps 10-12: chunks checked, then decompressed, then the digest
            section = DataSection(p, head.frame)
            section.check_all()
            regular = section.stored_regular()
            section.close()
            # metadata-only frames too: what open() would do. Not memory-mapped: the chunks are read
            # one at a time, so an incompressible file needs neither its size in address space nor in RSS.
            nd = open_frame(p, None, {"nthreads": 1})
            total = (nd.schunk.nchunks if head.meta.array is not None else 0) + 2
            if progress is not None:
                progress(1, total)
            if head.meta.array is not None:
                _check_chunks(nd, p, regular, progress, total)
            verify_digest(p, head.meta)
            if progress is not None:
                progress(total, total)
        else:  # the chunk index is frame structure: checked as open() and a remote quick check do
            DataSection(p, head.frame).close()
    except HeaderEncodingError as exc:
        report.problems.extend(_legacy_problems(p) or _problems_of(exc))
    except FrameMismatchError as exc:  # read_header stops at the first disagreement; list them all
        report.problems.extend(_mismatch_problems(p) or _problems_of(exc))
    except MLArrayError as exc:
        report.problems.extend(_problems_of(exc))
    except OSError as exc:
        report.problems.append(
            Problem("file", "FILE_NOT_FOUND" if isinstance(exc, FileNotFoundError) else "READ_ONLY", str(exc))
        )
    return report


def frame_mismatches(meta: Meta, frame: FrameInfo) -> list[str]:
    """Every way the header's shape, dtype and chunking disagree with the frame's b2nd metalayer (spec 8).

    :func:`mlarray.storage.io.check_against_frame` raises for the first of them, with the same
    message; a report lists them all.
    """
    nd = frame.nd
    if meta.array is None:
        return [] if nd.shape == (0,) else [f"the header says metadata-only but the frame holds shape {nd.shape}"]
    found = []
    if tuple(meta.array.shape) != nd.shape:
        found.append(f"header shape {tuple(meta.array.shape)} != frame shape {nd.shape}")
    # spec 5.9.9: byte for byte, except that a 1-byte type's byte-order character is not significant
    header_dtype = meta.array.dtype
    one_byte = header_dtype[0] == "|" and nd.dtype[:1] in ("<", ">", "|", "=") and nd.dtype[1:] == header_dtype[1:]
    if nd.dtype != header_dtype and not one_byte:
        found.append(f"header dtype {header_dtype} != frame dtype {nd.dtype}")
    layout = meta.layout
    if layout is not None and (tuple(layout.chunk_size) != nd.chunks or tuple(layout.block_size) != nd.blocks):
        found.append(
            f"header layout chunks {layout.chunk_size}/blocks {layout.block_size} != "
            f"frame {list(nd.chunks)}/{list(nd.blocks)}"
        )
    return found


def _mismatch_problems(path: str) -> list[Problem]:
    """One ``FRAME_MISMATCH`` problem per disagreement of a header that is valid in itself with its frame."""
    try:
        frame = inspect_frame(path)
        meta = parse_header(decode_header(frame.header_bytes, path=path), path=path)
    except (MLArrayError, OSError):
        return []  # changed since read_header: report what read_header said
    code = FrameMismatchError.code
    return [
        Problem("file", code, str(FrameMismatchError(message, path=path))) for message in frame_mismatches(meta, frame)
    ]


def _legacy_problems(path: str) -> list[Problem]:
    """For a file of the earlier implementation: one ``LEGACY_FORMAT`` problem, or why it cannot be migrated."""
    from mlarray.legacy.reader import is_legacy_file, read_legacy

    if not is_legacy_file(path):
        return []
    try:
        legacy = read_legacy(path)
    except MLArrayError as exc:
        return _problems_of(exc)
    return [
        Problem(
            "file",
            "LEGACY_FORMAT",
            f"a file of the earlier mlarray implementation ({legacy.encoding} header); it reads safely: "
            "convert it with `mlarray migrate`",
        )
    ]


def _check_chunks(
    nd: Any, path: str, regular: np.ndarray[Any, Any], progress: Progress | None = None, total: int = 0
) -> None:
    """Decompress every chunk of the frame stored with blocks (``regular``, by chunk number); any
    failure is a corrupt frame. Special entries and special-value chunks hold no blocks: their
    checks settled them, and expanding one (up to 2 GiB of a repeated value) proves nothing more."""
    from mlarray.errors import CorruptFrameError

    schunk = nd.schunk
    if len(regular) != schunk.nchunks:
        raise CorruptFrameError("the frame's chunk count differs from its chunk index", path=path)
    for i in np.flatnonzero(regular).tolist():
        try:
            schunk.decompress_chunk(i)
        except Exception as exc:
            raise CorruptFrameError(f"chunk {i} cannot be decompressed ({exc})", path=path) from None
        if progress is not None:
            progress(i + 2, total)
    try:
        np.asarray(nd[tuple(slice(0, 1) for _ in nd.shape)])
    except Exception as exc:
        raise CorruptFrameError(f"the array cannot be read ({exc})", path=path) from None
