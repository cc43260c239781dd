"""Atomic file and directory writes, shared by every module that writes outputs.

A reader never sees a half-written file: each writer writes into a temporary sibling (same directory,
so `os.replace` is an atomic rename on POSIX) and renames it into place at the end; on any error the
temporary is removed and the target is left as it was.

    with atomic_path("out.h5", suffix=".h5") as tmp:   # tmp: a path to write to
        write(tmp)
    write_text_atomic("a.json", text); write_json_atomic("a.json", obj); write_bytes_atomic(path, data)
    tmp, commit = atomic_dir("model/")                  # directory: write into tmp, then commit()
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from .errors import InputError


def default_mode(base: int = 0o666) -> int:
    """`base` less the process umask: 0o666 → the mode `open()` gives a new file (mkstemp gives 0o600);
    0o777 → a new directory's."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


@contextlib.contextmanager
def atomic_path(path, suffix: str = "", mode: int | None = None):
    """Yield a temporary path beside `path`; on normal exit it replaces `path` with file mode `mode`
    (default: what `open()` would give, i.e. 0o666 less the umask; pass 0o600 for private data)."""
    path = Path(path)
    d = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=d)
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):
            os.chmod(tmp, default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data: bytes, mode: int | None = None) -> None:
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text_atomic(path, text: str, mode: int | None = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, mode=mode) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def write_json_atomic(path, obj, indent: int = 2, sort_keys: bool = True, default=None) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n")


def atomic_dir(target):
    """(tmp_dir, commit): write the directory's content into tmp_dir, then commit() swaps it into `target`
    (an existing target is replaced). On failure call `shutil.rmtree(tmp_dir)` (or use `atomic_directory`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))

    def commit():
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    return tmp, commit


def preset_yaml(name, preset_dir, what: str):
    """(config dict, source) of a preset `name` in `preset_dir` (NAME.yaml) or of a YAML file path;
    InputError naming the known presets otherwise (`what`: "prior", "VAE", ...)."""

    path = Path(str(name))
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = Path(preset_dir) / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in Path(preset_dir).glob("*.yaml"))
            raise InputError(f"unknown {what} preset {name!r}: expected one of {known} or a YAML file")
    return yaml.safe_load(path.read_text()) or {}, str(path)


@contextlib.contextmanager
def atomic_directory(target):
    """Context-manager form of `atomic_dir`: yields the temporary directory, commits on normal exit."""
    tmp, commit = atomic_dir(target)
    try:
        yield tmp
        commit()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
