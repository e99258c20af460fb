"""The ``redact`` stage: pseudonymise a stream of notes, and give them back from a mapping (``--restore``).

:func:`run_redact` reads what ``nerkd infer`` reads (plain text, one note per line, or JSONL with ``text`` and an
optional ``id``; a file or stdin), tags the notes with the engine of :mod:`nerkd.infer` (long texts windowed,
never truncated; ``redact.bias`` set as the engine's entity bias), replaces entities and identifiers with a
:class:`nerkd.redact.Redactor` and writes one JSONL line per input line: ``{"id"?, "text", "replacements"}``.
Other fields of a JSONL input line are not copied (they may hold personal data). The original text is never
written to the output nor logged; errors name a file and line, never a note's content.

With a mapping file, each note's mapping (original values) is written there, one line per input line after a
header line, readable by its owner only (created with mode 0600, renamed into place at the end, also after an
error, so that it matches the output written). :func:`run_restore` reads a redacted JSONL file and its
mapping and writes the original notes back, byte-identical: plain text lines for a plain-text input, else
``{"id"?, "text"}`` lines.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from nerkd.errors import DataError, NerkdError, os_reason
from nerkd.log import NullProgress, progress, say
from nerkd.stages.infer import STDIN, STDOUT, check_paths, encode_notes, job_streams, open_for_option

if TYPE_CHECKING:
    from nerkd.data.docs import Doc
    from nerkd.data.encode import EncodeStats
    from nerkd.infer import Engine, RunStats
    from nerkd.redact import Redactor
    from nerkd.settings import InferSettings, RedactSettings

MIN_KEY_BYTES = 16


@dataclass
class RedactJob:
    """What to pseudonymise and where to write it. ``source``/``target``: a file (checked, opened and closed
    here) or an open binary stream (left open; ``source_name`` names it in errors). ``mapping``: the mapping
    file, or None (no mapping kept). ``key_file``: the secret key (consistency across documents), or None."""

    source: Path | BinaryIO
    target: Path | BinaryIO
    source_name: str = STDIN
    in_format: str = "auto"
    mapping: Path | None = None
    key_file: Path | None = None
    chunk_size: int | None = None
    threads: int | None = None
    show_progress: bool = True


@dataclass
class RedactRun:
    model: str
    stats: RunStats                 # notes, words, entities (the model's), seconds
    encoded: EncodeStats
    target: str                     # the output file, or <stdout>
    mode: str
    bias: float
    counts: dict[tuple[str, str], int] = field(default_factory=dict)   # (label, source) -> replacements
    mapping: str | None = None      # the mapping file written
    keyed: bool = False
    notes: list[tuple[str, str]] = field(default_factory=list)         # ("info" | "warning", message)

    @property
    def replacements(self) -> int:
        return sum(self.counts.values())


@dataclass
class RestoreRun:
    docs: int
    restored: int                   # replacements put back
    target: str


def read_key(path: Path) -> bytes:
    """The secret key in ``path`` (its bytes, a final newline dropped): at least 16 bytes."""
    try:
        key = path.read_bytes().rstrip(b"\r\n")
    except FileNotFoundError:
        raise NerkdError(f"--key-file {path}: no such file") from None
    except OSError as e:
        raise NerkdError(f"--key-file {path}: cannot read ({os_reason(e)})") from e
    if len(key) < MIN_KEY_BYTES:
        raise NerkdError(f"--key-file {path}: {len(key)} bytes, a key needs at least {MIN_KEY_BYTES} (e.g. "
                         f"head -c 32 /dev/urandom > {path.name})")
    return key


def key_notes(path: Path) -> list[tuple[str, str]]:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [("warning", f"--key-file {path}: readable by others (chmod 600 {path}): whoever holds the key can "
                            f"test guesses of a name against the surrogates")]
    return []


def make_redactor(settings: RedactSettings, key_file: Path | None) -> Redactor:
    """The :class:`~nerkd.redact.Redactor` of ``settings`` with the key of ``key_file`` (if any)."""
    from nerkd.redact import Redactor

    return Redactor(settings, read_key(key_file) if key_file is not None else None)


def run_redact(model: str | Path, job: RedactJob, settings: RedactSettings, infer: InferSettings, *,
               max_length: int, stride: int) -> RedactRun:
    """Pseudonymise ``job.source`` into ``job.target`` (see module doc)."""
    from nerkd.infer import load_engine
    from nerkd.threads import describe_threads, set_threads

    source, target = _path(job.source), _path(job.target)
    check_paths(source, target)
    key_file = job.key_file or (Path(settings.key_file) if settings.key_file else None)
    check_mapping(job.mapping, [p for p in (source, target, key_file) if p is not None])
    redactor = make_redactor(settings, key_file)
    n_threads, why = set_threads(job.threads)
    engine = load_engine(model, infer, max_length=max_length, stride=stride)
    engine.entity_bias = settings.bias
    say(f"redact: {model} on {engine.device.type} ({describe_threads(n_threads, why)}), mode {settings.mode}, "
        f"bias {settings.bias:g}, labels {' '.join(engine.space.types)}, rules {'on' if settings.rules else 'off'}, "
        f"dates {settings.dates}{', keyed' if key_file else ''}")
    counts: dict[tuple[str, str], int] = {}
    with job_streams(job) as (stream, name, total, out):
        tap = _Tap(stream)
        head = lambda: orjson.dumps(_header(tap.format(job.in_format), settings.mode)) + b"\n"  # noqa: E731
        with _mapping_file(job.mapping, head) as keep:
            pending: list[bytes] = []   # the mapping lines of the chunk being written
            stats = _redact(engine, job, tap, name, total, _Writer(out, keep, pending, job.target),
                            _liner(redactor, counts, pending if keep is not None else None))
    return RedactRun(str(model), stats, engine.encoded, str(target) if target else STDOUT, settings.mode,
                     settings.bias, counts, str(job.mapping) if job.mapping else None, key_file is not None,
                     (key_notes(key_file) if key_file else []) + encode_notes(engine))


def _header(fmt: str, mode: str) -> dict[str, Any]:
    from nerkd.redact.mapping import header

    return header(fmt, mode)


def _liner(redactor: Redactor, counts: dict[tuple[str, str], int], keep: list[bytes] | None
           ) -> Callable[[Doc, list[dict]], bytes]:
    """The engine's line maker: one note's entities -> its output line (its mapping line kept in ``keep``)."""
    from nerkd.data.docs import NO_ID

    def line(doc: Doc, entities: list[dict]) -> bytes:
        result = redactor.redact(doc.text, entities)
        for k, n in result.counts().items():
            counts[k] = counts.get(k, 0) + n
        obj: dict[str, Any] = {} if doc.id is NO_ID else {"id": doc.id}
        obj.update(result.to_json())
        if keep is not None:
            keep.append(orjson.dumps({"line": doc.line, **({} if doc.id is NO_ID else {"id": doc.id}),
                                      "mapping": result.mapping}) + b"\n")
        return orjson.dumps(obj) + b"\n"

    return line


class _Writer:
    """Each chunk of output lines written whole (:class:`nerkd.stages.infer.WholeWrites`: a failed write, a full
    disk, cuts the file back to its last whole line), then its mapping lines: the mapping never maps a line the
    output lacks."""

    def __init__(self, out: BinaryIO, keep: Callable[[bytes], None] | None, pending: list[bytes],
                 target: Path | BinaryIO):
        from nerkd.stages.infer import WholeWrites

        self.whole = WholeWrites(out, str(target) if isinstance(target, Path) else STDOUT,
                                 cut=isinstance(target, Path))
        self.keep, self.pending = keep, pending

    def __call__(self, data: bytes) -> None:
        self.whole.write(data)
        if self.keep is not None and self.pending:
            self.keep(b"".join(self.pending))
        self.pending.clear()


def _redact(engine: Engine, job: RedactJob, stream: _Tap, name: str, total: int | None, write: _Writer,
            line: Callable[[Doc, list[dict]], bytes]) -> RunStats:
    from nerkd.infer import read_docs

    bar = progress() if job.show_progress else NullProgress()
    with bar:
        task = bar.add_task("redact", total=total, info="", percent=True)
        return engine.run(read_docs(stream, name, job.in_format), write, chunk_size=job.chunk_size, line=line,
                          on_chunk=lambda chunk, s: bar.update(
                              task, advance=sum(d.size for d in chunk),
                              info=f"{s.docs} notes, {s.docs / max(s.seconds, 1e-9):,.1f} notes/s"))


def run_restore(source: Path | BinaryIO, target: Path | BinaryIO, mapping: Path, *, source_name: str = STDIN
                ) -> RestoreRun:
    """Write the original notes of a redacted JSONL file back from its ``mapping`` file (see module doc)."""
    from nerkd.data.docs import NO_ID, read_docs
    from nerkd.redact.mapping import RestoreError, restore

    check_paths(_path(source), _path(target))
    if not mapping.is_file():
        raise NerkdError(f"--mapping {mapping}: no such file")
    if _path(target) is not None and _path(target).exists() and _path(target).samefile(mapping):
        raise NerkdError(f"--output {target}: is the --mapping file")
    job = RedactJob(source, target, source_name)
    done = restored = 0
    with job_streams(job) as (stream, name, _, out), open_for_option(mapping, "rb", "--mapping") as maps:
        fmt = _read_header(maps, mapping)
        for doc in read_docs(stream, name, "jsonl"):
            entry = _mapping_line(maps, mapping, doc.line)
            try:
                text = restore(doc.text, entry)
            except RestoreError as e:
                raise DataError(name, doc.line, str(e)) from None
            if fmt == "text":
                out.write(text.encode("utf-8") + b"\n")
            else:
                out.write(orjson.dumps({**({} if doc.id is NO_ID else {"id": doc.id}), "text": text}) + b"\n")
            done += 1
            restored += len(entry["mapping"])
        if maps.readline().strip():
            raise NerkdError(f"--mapping {mapping}: more notes than the {done} of the redacted input: not its "
                             f"mapping")
    return RestoreRun(done, restored, str(target) if isinstance(target, Path) else STDOUT)


def _read_header(maps: BinaryIO, path: Path) -> str:
    from nerkd.redact.mapping import is_header

    try:
        head = orjson.loads(maps.readline() or b"null")
    except orjson.JSONDecodeError:
        head = None
    if not is_header(head):
        raise NerkdError(f"--mapping {path}: not a mapping file written by nerkd redact")
    return head["input_format"]


def _mapping_line(maps: BinaryIO, path: Path, line: int) -> dict:
    raw = maps.readline()
    if not raw.strip():
        raise NerkdError(f"--mapping {path}: no mapping for line {line} of the redacted input: not its mapping")
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise DataError(path, line + 1, "invalid JSON") from None
    if not isinstance(entry, dict) or entry.get("line") != line or not isinstance(entry.get("mapping"), list):
        raise NerkdError(f"--mapping {path}: line {line + 1} is not the mapping of line {line} of the redacted "
                         f"input")
    return entry


# -- files -------------------------------------------------------------------------------------------
def check_mapping(mapping: Path | None, others: list[Path]) -> None:
    """Refuse a mapping file that is an input, the output or the key, or an existing file nerkd did not write."""
    if mapping is None:
        return
    from nerkd.redact.mapping import is_header

    if mapping.is_dir():
        raise NerkdError(f"--mapping {mapping}: is a folder, not a file")
    if not mapping.exists():
        check_paths(None, mapping)
        return
    for other in others:
        if other.exists() and mapping.samefile(other):
            raise NerkdError(f"--mapping {mapping}: is also an input, the output or the key file")
    with open_for_option(mapping, "rb", "--mapping") as fh:
        try:
            head = orjson.loads(fh.readline() or b"null")
        except orjson.JSONDecodeError:
            head = None
    if not is_header(head):
        raise NerkdError(f"--mapping {mapping}: exists and was not written by nerkd redact: not overwritten")


class _Tap:
    """The input's lines, passed through; remembers the first non-empty one (the input format of ``auto``)."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.first = stream, None

    def __iter__(self) -> Iterator[bytes]:
        for raw in self.stream:
            if self.first is None and raw.strip():
                self.first = raw
            yield raw

    def format(self, in_format: str) -> str:
        from nerkd.data.docs import detect_format

        if in_format != "auto":
            return in_format
        return detect_format(self.first.decode("utf-8-sig", "replace")) if self.first else "text"


@contextlib.contextmanager
def _mapping_file(path: Path | None, head: Callable[[], bytes]) -> Iterator[Callable[[bytes], None] | None]:
    """A writer into a new file of mode 0600 beside ``path`` (``head()`` first, written with the first line or at
    the end), renamed onto ``path`` at the end, after an error too: it then maps the notes written."""
    if path is None:
        yield None
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise NerkdError(f"--mapping {path}: cannot create ({os_reason(e)})") from e
    started = False

    def write(data: bytes) -> None:
        nonlocal started
        if not started:
            fh.write(head())
            started = True
        fh.write(data)

    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                yield write
            finally:
                if not started:
                    fh.write(head())
                fh.flush()
                os.fsync(fh.fileno())
    finally:
        os.replace(tmp, path)


def _path(stream: Path | BinaryIO) -> Path | None:
    return stream if isinstance(stream, Path) else None

