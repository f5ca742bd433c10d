"""What a run folder guarantees: it says exactly what produced it, and a rerun never reuses it silently.

Every step folder (a training stage, a GMP extraction) holds ``record.json``: the fully resolved
settings that affect its result, fingerprints of its inputs (the data rows, the upstream model or
labels by content), the code version, and, once finished, a fingerprint of its output. A rerun into
the same folder compares settings and inputs first: any difference stops it before any work, naming
the differing keys, and leaves the folder untouched, unless ``overwrite`` is asked for, in which case
the folder is cleared and the step recomputed.

Also here: a run lock (one writer per folder, stale locks detected) and the check that tells a
complete Trainer checkpoint from one cut short by a crash or a full disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, fields, is_dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from accelerate import PartialState

logger = logging.getLogger(__name__)

RECORD_NAME = "record.json"
LOCK_NAME = ".lock"


def is_bookkeeping(path: Path) -> bool:
    """The lock and the run's log files: never a step's output, never cleared by ``overwrite``."""
    return path.name == LOCK_NAME or (path.name.startswith("run") and path.suffix == ".log")


# Arguments that never change a result: where things go, how much is logged or kept, how it is resumed.
NEUTRAL_KEYS = frozenset(
    {
        "output_dir", "overwrite", "overwrite_output_dir", "logging_dir", "logging_steps", "logging_strategy",
        "logging_first_step", "logging_nan_inf_filter", "report_to", "run_name", "disable_tqdm", "log_level",
        "log_level_replica", "log_on_each_node", "resume_from_checkpoint", "save_total_limit", "push_to_hub",
        "hub_model_id", "hub_token", "hub_private_repo", "hub_strategy", "hub_always_push", "hub_revision",
        "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
        "dataloader_prefetch_factor", "save_on_each_node", "project", "trackio_space_id", "trackio_bucket_id",
        "batch_seconds",
    }
)  # fmt: skip


class RecordMismatch(ValueError):
    """A folder holds a step made with other settings or inputs than the ones asked for now."""


class RunLocked(RuntimeError):
    """Another run holds the folder's lock."""


def code_version() -> dict[str, Any]:
    """The package version and, in a git checkout, the commit and whether the tree had changes."""
    try:
        package = version("gmp-tl-hf")
    except PackageNotFoundError:
        package = None
    info: dict[str, Any] = {"package": package, "commit": None, "dirty": None}
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            info["commit"] = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
            )
            info["dirty"] = bool(status.stdout.strip())
        except (OSError, subprocess.CalledProcessError):
            pass
    return info


def resolved_settings(*arguments: Any, drop: Iterable[str] = ()) -> dict[str, Any]:
    """The result-relevant fields of dataclass arguments (TrainingArguments too), as JSON values."""
    settings: dict[str, Any] = {}
    for argument in arguments:
        values = (
            argument.to_dict()
            if hasattr(argument, "to_dict")
            else asdict(argument)
            if is_dataclass(argument)
            else dict(argument)
        )
        name = type(argument).__name__
        settings[name] = {
            key: value for key, value in sorted(values.items()) if key not in NEUTRAL_KEYS and key not in set(drop)
        }
    return json.loads(json.dumps(settings, default=str))


def fingerprint_rows(splits: dict[str, Any]) -> str:
    """Content hash of the rows of every split: ids, audio paths, labels, speakers, folds, lengths."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        part = splits[name]
        columns = [c for c in ("id", "emotion", "gender", "speaker", "fold", "num_samples") if c in part.column_names]
        digest.update(name.encode())
        digest.update(json.dumps([[a.get("path") for a in part["audio"]], *[list(part[c]) for c in columns]]).encode())
    return digest.hexdigest()


def fingerprint_files(paths: Iterable[Path]) -> str:
    """Content hash of files (a model's weights, a quantizer, labelled datasets), in name order."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def fingerprint_source(name_or_path: str) -> str:
    """A model to start from: a local folder by the content of its weights, a Hub id by its name."""
    path = Path(name_or_path)
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        if not weights:
            raise FileNotFoundError(f"{path} holds no model weights (*.safetensors or *.bin)")
        return "sha256:" + fingerprint_files(weights)
    return f"hub:{name_or_path}"


def settings_defaults(*arguments: Any) -> dict[str, Any]:
    """The default of every field of dataclass arguments, shaped like :func:`resolved_settings`."""
    defaults: dict[str, Any] = {}
    for argument in arguments:
        values = {}
        for item in fields(argument):
            if item.default is not MISSING:
                values[item.name] = item.default
            elif item.default_factory is not MISSING:
                values[item.name] = item.default_factory()
        defaults[type(argument).__name__] = values
    return json.loads(json.dumps(defaults, default=str))


def differences(old: Any, new: Any, defaults: Any = None, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two JSON values.

    A key the old value lacks counts as its entry in ``defaults`` (see :func:`settings_defaults`): an
    option added since a record was written takes the old behaviour as its default, so a folder made
    before it existed still matches a run that leaves it at its default, and only such a run.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        defaults = defaults if isinstance(defaults, dict) else {}
        found = []
        for key in sorted(set(old) | set(new)):
            before = old.get(key, defaults.get(key, "<absent>"))
            found += differences(before, new.get(key, "<absent>"), defaults.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def read_record(step_dir: str | Path) -> dict[str, Any] | None:
    path = Path(step_dir) / RECORD_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def open_step(
    step_dir: str | Path,
    step: str,
    settings: dict,
    inputs: dict,
    overwrite: bool = False,
    write: bool = True,
    defaults: dict | None = None,
) -> bool:
    """Claim ``step_dir`` for a step with these settings and inputs; True when it is already complete.

    A folder with a different record raises :class:`RecordMismatch` (nothing is touched) unless
    ``overwrite``, which clears it. A folder with content but no record (made by an older version or
    by hand) is refused the same way. The record is written before any work, marked complete by
    :func:`close_step`. With ``write=False`` (every process but the main one) it only refuses.
    ``defaults`` (:func:`settings_defaults`) stand for settings an older record lacks.
    """
    step_dir = Path(step_dir)
    record = read_record(step_dir)
    changed = [] if record is None else differences(
        {"settings": record["settings"], "inputs": record["inputs"]},
        {"settings": settings, "inputs": inputs},
        {"settings": defaults},
    )  # fmt: skip
    foreign = record is None and step_dir.is_dir() and any(not is_bookkeeping(p) for p in step_dir.iterdir())
    if (changed or foreign) and not overwrite:
        reason = "; ".join(changed[:8]) + (f" (+{len(changed) - 8} more)" if len(changed) > 8 else "")
        if foreign:
            reason = f"it has files but no {RECORD_NAME}, so nothing says what made them"
        raise RecordMismatch(
            f"{step_dir} holds a {step} step made differently: {reason}. Nothing was changed; rerun with "
            "--overwrite to recompute it (and the steps after it), or choose another --output_dir"
        )
    if not write:
        return record is not None and not changed and record.get("status") == "complete"
    if changed or foreign:
        logger.info("%s: %s differs from the record; recomputing it", step_dir, step)
        for child in step_dir.iterdir():
            if not is_bookkeeping(child):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        record = None
    if record is not None:
        return record.get("status") == "complete"
    step_dir.mkdir(parents=True, exist_ok=True)
    _write_json(
        step_dir / RECORD_NAME,
        {"step": step, "status": "running", "settings": settings, "inputs": inputs, "code": code_version()},
    )
    return False


def claim_step(
    state: PartialState,
    step_dir: str | Path,
    step: str,
    settings: dict,
    inputs: dict,
    overwrite: bool = False,
    defaults: dict | None = None,
) -> bool:
    """:func:`open_step` for every process of a run; True when the step is already complete.

    Every rank checks the folder before any rank writes to it, so all refuse alike (none is left
    waiting for one that stopped) and none reads the main process's record half made; then the main
    process clears or writes the record and all wait for it.
    """
    open_step(step_dir, step, settings, inputs, overwrite, write=False, defaults=defaults)
    state.wait_for_everyone()
    if state.is_main_process:
        open_step(step_dir, step, settings, inputs, overwrite, write=True, defaults=defaults)
    state.wait_for_everyone()
    return read_record(step_dir)["status"] == "complete"


def close_step(step_dir: str | Path, output_files: Iterable[Path]) -> dict[str, Any]:
    """Mark the step complete, with a content fingerprint of what it produced (for the steps after it)."""
    path = Path(step_dir) / RECORD_NAME
    record = json.loads(path.read_text())
    record.update(status="complete", output="sha256:" + fingerprint_files(output_files), finished=time.time())
    _write_json(path, record)
    return record


def _write_json(path: Path, value: Any) -> None:
    """Write ``path`` completely or not at all (a temporary file renamed over it)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, default=str))
    os.replace(temporary, path)


# ---------------------------------------------------------------- run lock


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(folder: str | Path, enabled: bool = True) -> Iterator[None]:
    """One writer per folder: ``.lock`` holds pid and host; a lock of a dead process on this host is
    stale and taken over (with a log line), any other is refused with what to do."""
    if not enabled:
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            if holder.get("host") == me["host"] and holder.get("pid") and not _process_alive(int(holder["pid"])):
                logger.warning(
                    "%s: stale lock of process %s (started %s), which is no longer running; taking it over",
                    folder, holder.get("pid"), holder.get("started"),
                )  # fmt: skip
                path.unlink(missing_ok=True)
                continue
            raise RunLocked(
                f"{folder} is in use by process {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"(since {holder.get('started', '?')}); wait for it, or delete {path} if that run is dead"
            ) from None
        with os.fdopen(descriptor, "w") as handle:
            json.dump(me, handle)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- checkpoints


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """Why a Trainer checkpoint folder is not complete, or None when every file in it is whole.

    The Trainer writes the weights, then optimizer/scheduler/RNG state, then ``trainer_state.json``;
    a crash or a full disk leaves a folder missing some or with a truncated file.
    """
    checkpoint = Path(checkpoint)
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, json.JSONDecodeError):
        return "trainer_state.json is cut short"
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not weights:
        return "no model weights"
    for path in weights:
        problem = _safetensors_problem(path)
        if problem:
            return f"{path.name} {problem}"
    for path in [*checkpoint.glob("*.pt"), *checkpoint.glob("*.pth")]:
        if not zipfile.is_zipfile(path):
            return f"{path.name} is cut short"
    return None


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    if size < 8:
        return "is cut short"
    with open(path, "rb") as handle:
        header_size = int.from_bytes(handle.read(8), "little")
        if 8 + header_size > size:
            return "is cut short"
        try:
            header = json.loads(handle.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "has a damaged header"
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    return None if 8 + header_size + end == size else "is cut short"


def newest_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete ``checkpoint-*`` of ``output_dir``; broken ones are reported and renamed to
    ``broken-checkpoint-*`` so that neither resuming nor the Trainer's rotation ever picks them."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    candidates = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for checkpoint in sorted(candidates, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return str(checkpoint)
        target = checkpoint.with_name(f"broken-{checkpoint.name}")
        shutil.rmtree(target, ignore_errors=True)
        checkpoint.rename(target)
        logger.warning(
            "%s is incomplete (%s); set aside as %s, resuming from an older one", checkpoint, problem, target.name
        )
    return None
