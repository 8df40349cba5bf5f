"""Checkpoints that survive a kill or a full disk, and a resume that only continues from a complete one.

Writing: every checkpoint (a single file, or a DeepSpeed folder of rank shards; `last` included) is written under
`<name>.tmp` and renamed to `<name>` only when every rank has finished, so a kill or a full disk during a save
leaves the previous `<name>` as it was. A DeepSpeed folder cannot be renamed over an existing one in one step, so
replacing is two renames (old out of the way, new in place); a kill between them leaves no `<name>` and resume
falls back to the newest step checkpoint. A write that fails (a full disk) fails the save on every rank, with the
path and "No space left on device" in the error; under DeepSpeed only once every rank has left DeepSpeed's save,
so no rank is left waiting in a collective. Weights that are not finite are never written (`FiniteWeightsCheck`).

Resuming (`train.resume=auto`): the candidates are `last.ckpt` and the step-numbered checkpoints beside it; each is
checked (`checkpoint_problem`: readable, non-empty model states, every rank's optimizer shard present and from one
step) and the valid one with the highest step wins. Every candidate passed over is reported with the reason.
Then the checkpoint's saved config is compared with the new one (`check_resume_config`): an architecture change
is refused by name before the run folder's config.yaml is rewritten; other changes are reported and recorded.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.strategies import DeepSpeedStrategy
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from typing_extensions import override

from moda_train.consolidate import DEEPSPEED_TAG_FILE
from moda_train.core.config_loader import ConfigError

TMP_SUFFIX = ".tmp"
OLD_SUFFIX = ".old"
LAST = "last.ckpt"
STEP_PATTERN = re.compile(r"^step-(\d+)\.ckpt$")  # ModelCheckpoint's filename="step-{step:07d}" (launch/run.py)
DEEPSPEED_TAG = "checkpoint"  # the tag Lightning's DeepSpeedStrategy saves under
MODEL_STATES = "mp_rank_00_model_states.pt"
FAULT_ENV = "MODA_FAULT_KILL_IN_SAVE"
"""Fault injection for tests: `<step>` (or `<step>:SIGTERM`, `<step>:SIGKILL`) makes every rank send itself that
signal (SIGKILL by default) while saving `last` at that global step, after the shards are written under the
temporary name and before the rename (the moment a real kill hurts most)."""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _replace(tmp: Path, final: Path) -> None:
    """Move the finished `tmp` to `final`: a file in one atomic rename, a folder in two (module docstring)."""
    if final.is_dir():
        old = final.with_name(final.name + OLD_SUFFIX)
        _remove(old)
        final.rename(old)
        tmp.rename(final)
        _remove(old)
    else:
        os.replace(tmp, final)


def _fsync_tree(path: Path) -> None:
    """Flush what was written to the disk before the rename makes it visible (a crash must not expose zeros)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def save_error(path: Path, err: BaseException) -> OSError:
    """A save failure as an OSError naming the checkpoint; a full disk says so (PyTorch's writer reports it only
    as `basic_ios::clear: iostream error`), with the free space and the size of the checkpoint it replaces."""
    folder = path.parent if path.parent.exists() else Path.cwd()
    free = shutil.disk_usage(folder).free
    previous = _size(path)
    full = (
        getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err) or free < max(previous, 1 << 20)
    )
    if full:
        needed = f"; the checkpoint it replaces took {previous:,} bytes" if previous else ""
        return OSError(
            errno.ENOSPC,
            f"saving checkpoint {path} failed: No space left on device ({free:,} bytes free in {folder}{needed}); "
            f"the previous checkpoint is untouched. Free space or move train.out_dir, then resubmit ({err})",
        )
    return OSError(getattr(err, "errno", None) or errno.EIO, f"saving checkpoint {path} failed: {err}")


def _maybe_inject_kill(path: Path, step: int) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    at, _, name = spec.partition(":")
    if path.name != LAST or at != str(step):
        return
    if name not in ("", "SIGTERM", "SIGKILL"):
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected <step>, <step>:SIGTERM or <step>:SIGKILL")
    os.kill(os.getpid(), signal.Signals[name or "SIGKILL"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Single-file checkpoints (every strategy but DeepSpeed): `torch.save` to `<path>.tmp` beside the target,
    fsync, rename. Lightning's own writer stages the file in the system temp folder and moves it, which is a
    non-atomic copy when that folder is on another file system (the usual case on a cluster node)."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + TMP_SUFFIX)
        try:
            torch.save(checkpoint, tmp)
            _fsync_tree(tmp)
        except (OSError, RuntimeError) as err:
            error = save_error(path, err)  # while the disk is as full as the write found it
            _remove(tmp)
            raise error from err
        _maybe_inject_kill(path, int(checkpoint.get("global_step", -1)))
        os.replace(tmp, path)


class _DeferredWriteErrors:
    """A DeepSpeed engine's checkpoint writer for the length of one save, with write errors recorded, not raised.

    DeepSpeed's save ends with a barrier. A rank whose write fails (a full disk) and raises out of the save skips
    it, and its next collective pairs with the other ranks' closing barrier: from there on the ranks disagree and
    hang until the process-group timeout (seen with ZeRO-2 on a full disk: one rank's write failed, the other's
    did not). So every write of the save goes through `run`, and the first error is raised after the save. It is
    described (`save_error`) when it happens, while the disk is still as full as the write found it.
    """

    def __init__(self, inner: Any, checkpoint: Path) -> None:
        self.inner = inner
        self.checkpoint = checkpoint
        self.error: OSError | None = None
        self.cause: BaseException | None = None

    def __getattr__(self, name: str) -> Any:  # create, commit, load, ...: DeepSpeed's own
        return getattr(self.inner, name)

    def save(self, state_dict: dict, path: str) -> None:
        self.run(self.inner.save, state_dict, path)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.run(self.inner.makedirs, path, exist_ok)

    def run(self, write: Callable[..., Any], *args: Any) -> None:
        if self.error is None:  # after a failure the disk is still full: write nothing more
            try:
                write(*args)
            except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
                self.error, self.cause = save_error(self.checkpoint, err), err


class AtomicDeepSpeedStrategy(DeepSpeedStrategy):
    """Lightning's DeepSpeed strategy with the rank shards written under `<name>.tmp` and renamed when all ranks
    are done (DeepSpeed writes its folder with its own engine: a CheckpointIO plugin never sees it). A write that
    fails on any rank fails the save on every rank, with no rank left waiting in a collective."""

    def _write_folder(self, checkpoint: dict, folder: Path, final: Path) -> _DeferredWriteErrors:
        """DeepSpeedStrategy.save_checkpoint's call of the engine, with every write of it deferred (see
        _DeferredWriteErrors, which holds this rank's write error, if any)."""
        engine = self.deepspeed_engine
        writer = _DeferredWriteErrors(engine.checkpoint_engine, final)
        copy_script = engine._copy_recovery_script  # rank 0 copies DeepSpeed's zero_to_fp32.py beside its shard
        engine.checkpoint_engine = writer
        engine._copy_recovery_script = lambda path: writer.run(copy_script, path)
        try:
            # DeepSpeed writes the module and optimizer states itself; `latest` is written below, through `run`.
            client_state = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer_states")}
            engine.save_checkpoint(
                str(folder),
                client_state=client_state,
                tag=DEEPSPEED_TAG,
                exclude_frozen_parameters=self.exclude_frozen_parameters,
                save_latest=False,
            )
        finally:
            engine.checkpoint_engine = writer.inner
            del engine._copy_recovery_script
        if self.is_global_zero:
            writer.run((folder / DEEPSPEED_TAG_FILE).write_text, DEEPSPEED_TAG)
        writer.run(_fsync_tree, folder)
        return writer

    @override
    def save_checkpoint(self, checkpoint: dict, filepath: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        final = Path(self.broadcast(str(filepath)))
        tmp = final.with_name(final.name + TMP_SUFFIX)
        if self.is_global_zero:
            final.parent.mkdir(parents=True, exist_ok=True)
            _remove(tmp)  # left by a save that was killed
        self.barrier("checkpoint_tmp_ready")
        writer = self._write_folder(checkpoint, tmp, final)
        # Every rank learns whether any rank failed, so none waits forever at the next collective.
        if self.reduce_boolean_decision(writer.error is not None, all=False):
            error = writer.error or save_error(final, RuntimeError("another rank failed to write its shard"))
            self.barrier("checkpoint_failure_described")  # on every rank before the partial folder goes
            if self.is_global_zero:
                _remove(tmp)
            raise error from writer.cause
        _maybe_inject_kill(final, int(checkpoint.get("global_step", -1)))
        if self.is_global_zero:
            _replace(tmp, final)
        self.barrier("checkpoint_renamed")


def nonfinite_tensors(module: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers of `module` (EMA copy included) holding NaN or inf."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, t in named if t.is_floating_point() and t.numel() and not torch.isfinite(t).all()]


class FiniteWeightsCheck(pl.Callback):
    """Refuses to write a checkpoint whose weights are not finite: the run stops with the tensors named, and the
    checkpoints already on disk stay as they were. Runs on every rank as part of every save (a collective)."""

    @override
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        bad = nonfinite_tensors(pl_module)
        if trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise RuntimeError(
                f"weights at step {trainer.global_step} are not finite ({shown or 'on another rank'}): checkpoint "
                "not written, the ones on disk are unchanged. Lower optim.lr or check the data, then resume."
            )


def _load(path: Path) -> Any:
    # mmap: only the pickled structure is read; tensors stay on disk until touched.
    return torch.load(path, map_location="cpu", mmap=True, weights_only=False)


def _optimizer_steps(state: Any) -> set[int]:
    """Every optimizer `step` counter found in a (DeepSpeed) optimizer state, whatever its nesting."""
    steps: set[int] = set()
    if isinstance(state, dict):
        for key, value in state.items():
            if key == "step" and isinstance(value, int | torch.Tensor):
                steps.add(int(value))
            else:
                steps |= _optimizer_steps(value)
    elif isinstance(state, list | tuple):
        for value in state:
            steps |= _optimizer_steps(value)
    return steps


@dataclass
class CheckpointCheck:
    path: Path
    step: int | None
    """The global step stored in the checkpoint (None when unreadable)."""
    problem: str | None
    """Why it cannot be resumed from; None when it is complete and consistent."""
    config: dict = field(default_factory=dict)
    """The resolved experiment config saved in the checkpoint."""


def _check_deepspeed(path: Path) -> CheckpointCheck:
    tag_dir = path / DEEPSPEED_TAG
    states = tag_dir / MODEL_STATES
    if not states.is_file():
        return CheckpointCheck(path, None, f"no {DEEPSPEED_TAG}/{MODEL_STATES}")
    if states.stat().st_size == 0:
        return CheckpointCheck(path, None, f"{DEEPSPEED_TAG}/{MODEL_STATES} is empty (0 bytes)")
    try:
        model_states = _load(states)
    except Exception as err:  # any unpickling failure means the file is damaged
        return CheckpointCheck(path, None, f"{DEEPSPEED_TAG}/{MODEL_STATES} is unreadable ({type(err).__name__})")
    step, world = model_states.get("global_step"), model_states.get("dp_world_size")
    if not isinstance(step, int) or not isinstance(world, int):
        return CheckpointCheck(path, None, f"{MODEL_STATES} lacks global_step / dp_world_size")
    shard_steps: dict[int, set[int]] = {}
    for rank in range(world):
        shard = next(iter(tag_dir.glob(f"*zero_pp_rank_{rank}_*optim_states.pt")), None)
        if shard is None or shard.stat().st_size == 0:
            what = "missing" if shard is None else "empty"
            return CheckpointCheck(path, step, f"the optimizer shard of rank {rank} of {world} is {what}")
        try:
            shard_steps[rank] = _optimizer_steps(_load(shard).get("optimizer_state_dict"))
        except Exception as err:
            return CheckpointCheck(path, step, f"{shard.name} is unreadable ({type(err).__name__})")
    if len({frozenset(s) for s in shard_steps.values()}) > 1:
        found = ", ".join(f"rank {r}: {sorted(s)}" for r, s in shard_steps.items())
        return CheckpointCheck(path, step, f"the rank shards come from different optimizer steps ({found})")
    return CheckpointCheck(path, step, None, saved_config(model_states))


def checkpoint_problem(path: str | os.PathLike) -> CheckpointCheck:
    """Check that `path` (a single-file checkpoint or a DeepSpeed folder) is complete and consistent."""
    path = Path(path)
    if path.is_dir():
        return _check_deepspeed(path)
    if not path.is_file():
        return CheckpointCheck(path, None, "missing")
    if path.stat().st_size == 0:
        return CheckpointCheck(path, None, "empty (0 bytes)")
    try:
        checkpoint = _load(path)
    except Exception as err:
        return CheckpointCheck(path, None, f"unreadable ({type(err).__name__}: {err})")
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "global_step" not in checkpoint:
        return CheckpointCheck(path, None, "not a Lightning checkpoint (no state_dict / global_step)")
    return CheckpointCheck(path, int(checkpoint["global_step"]), None, saved_config(checkpoint))


def saved_config(checkpoint: dict) -> dict:
    return checkpoint.get("hyper_parameters", {}).get("config", {}) or {}


def choose_resume(checkpoint_dir: Path, report: Callable[[str], None] = print) -> CheckpointCheck | None:
    """The newest valid checkpoint in `checkpoint_dir` (`last` wins a tie), or None when there is none.

    Only candidates that could be newer than what is already found are opened: `last`, then the step-numbered
    checkpoints above its step, newest first. Each one passed over is reported with its problem.
    """
    steps = sorted(
        ((int(m.group(1)), p) for p in checkpoint_dir.glob("step-*.ckpt") if (m := STEP_PATTERN.match(p.name))),
        reverse=True,
    )
    best: CheckpointCheck | None = None
    last = checkpoint_dir / LAST
    if last.exists():
        check = checkpoint_problem(last)
        if check.problem is None:
            best = check
        else:
            report(f"resume: not using {last}: {check.problem}")
    for named_step, path in steps:
        if best is not None and best.step is not None and named_step <= best.step:
            break
        check = checkpoint_problem(path)
        if check.problem is None:
            if best is not None:
                report(
                    f"resume: {path.name} (step {check.step}) is newer than {best.path.name} (step {best.step})"
                )
            best = check
            break
        report(f"resume: not using {path}: {check.problem}")
    if best is not None and best.path != last:
        report(f"resume: falling back to {best.path} (step {best.step})")
    return best


ARCHITECTURE_GROUPS = ("task", "model", "vae", "alse", "classifier")
"""Config groups that define the network: a checkpoint trained with other values is another model, even where the
tensor shapes agree (`model.rope_theta`), so resuming across a change of them is refused."""

_RUN_IDENTITY_KEYS = ("train.resume", "train.run_name", "train.out_dir")  # differ between launches by design


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat |= _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def config_changes(saved: dict, new: dict) -> tuple[list[str], list[str]]:
    """(architecture changes, other changes) between a checkpoint's config and the new one, as `key: old -> new`
    lines; keys that only name the launch (run name, out_dir, resume) are left out."""
    old, now = _flatten(saved), _flatten(new)
    architecture, other = [], []
    for key in sorted(old.keys() | now.keys()):
        if key in _RUN_IDENTITY_KEYS or old.get(key, "<unset>") == now.get(key, "<unset>"):
            continue
        line = f"{key}: {old.get(key, '<unset>')!r} -> {now.get(key, '<unset>')!r}"
        (architecture if key.split(".")[0] in ARCHITECTURE_GROUPS else other).append(line)
    return architecture, other


def _report(message: str) -> None:
    # rank_zero_only.rank also knows the ranks Lightning's own launcher starts (they re-run this whole command).
    if rank_zero_only.rank == 0:
        print(message, flush=True)


def resume_checkpoint(resume: str, checkpoint_dir: Path) -> CheckpointCheck | None:
    """`train.resume`: `auto`, the newest complete checkpoint of the run folder (None on a fresh folder, never an
    error); `never`; or a path, which must be a complete checkpoint."""
    if resume == "never":
        return None
    if resume == "auto":
        check = choose_resume(checkpoint_dir, report=_report)
    else:
        check = checkpoint_problem(resume)
        if check.problem is not None:
            raise ConfigError(f"train.resume={resume!r}: cannot resume from it: {check.problem}")
    if check is not None:
        _report(f"resume: continuing from {check.path} (step {check.step})")
    return check


def check_resume_config(check: CheckpointCheck, config: dict, run_dir: Path) -> None:
    """Refuse to resume across an architecture change (naming the keys); report the other changes and append them
    to the run folder's `config_changes.log`."""
    architecture, other = config_changes(check.config, config)
    if architecture:
        raise ConfigError(
            f"resume from {check.path} (step {check.step}): the architecture differs from the checkpoint's: "
            + "; ".join(architecture)
            + ". Keep the checkpoint's values to resume, or start a fresh run with another train.run_name "
            "(or train.resume=never); docs/cluster.md, 'What survives what'"
        )
    if other and rank_zero_only.rank == 0:
        _report(f"resume: config changed since step {check.step}: " + "; ".join(other))
        with (run_dir / "config_changes.log").open("a") as record:
            record.write(f"resume from {check.path.name} (step {check.step}): " + "; ".join(other) + "\n")
