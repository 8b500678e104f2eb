"""Checkpoint files, for every model kind: a folder with ``model.safetensors`` (tensors only,
never pickled code) and ``config.json``.

- `save`: both files written to temporaries and renamed, so a run killed mid-write never leaves
  a half-written checkpoint; modes follow the user's umask; the weights carry the format version.
- `read_config` / `read_weights`: every failure is a `CheckpointError` sentence naming the file
  and what to do; weights are checked against the model they must fill (missing, unexpected and
  mis-shaped keys) and for NaN/inf before any is used.
- `hub_files`: the two files of ``<name>/`` in a Hugging Face repo (downloaded once, then cached).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ensemble.errors import CheckpointError
from ensemble.limits import all_finite

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: Path, final: Path) -> None:
    os.chmod(tmp, 0o666 & ~_umask())
    tmp.replace(final)


def save(
    folder: str | Path,
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    format_version: int,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``state`` (cast to ``dtype`` when given) and ``config`` into ``folder`` (created)."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.detach().to(dtype) if dtype else v.detach()).cpu().contiguous()
        for k, v in state.items()
    }
    tmp_weights, tmp_config = out / (WEIGHTS_FILE + ".tmp"), out / (CONFIG_FILE + ".tmp")
    try:
        save_file(tensors, str(tmp_weights), metadata={"format_version": str(format_version)})
        tmp_config.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        _publish(tmp_weights, out / WEIGHTS_FILE)
        _publish(tmp_config, out / CONFIG_FILE)
    finally:
        tmp_weights.unlink(missing_ok=True)
        tmp_config.unlink(missing_ok=True)
    return out


def read_config(path: Path, what: str, retrain: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``what`` names the model, ``retrain`` says how to get one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Cannot read the {what} config {path}: {exc}. {retrain}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"The {what} config {path} does not hold a JSON object. {retrain}")
    return data


def read_weights(
    path: Path, template: dict[str, torch.Tensor], what: str, retrain: str
) -> dict[str, torch.Tensor]:
    """Tensors of ``path``, checked to fill ``template`` (a model's state dict) exactly and to be
    finite."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"The {what} weights {path} are missing or corrupt ({exc}). {retrain}"
        ) from exc
    missing = sorted(set(template) - set(state))
    unexpected = sorted(set(state) - set(template))
    wrong = sorted(k for k in template if k in state and state[k].shape != template[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"The weights in {path} do not match the {what} config beside them (missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}): the two files "
            f"come from different models. {retrain}"
        )
    if not all_finite(t.float().numpy() for t in state.values()):
        raise CheckpointError(
            f"The weights in {path} contain NaN or infinite values (a diverged training run). "
            f"{retrain}"
        )
    return {k: v.to(template[k].dtype) for k, v in state.items()}


def hub_files(
    name: str, repo_id: str, revision: str | None, cache_dir: str | Path | None
) -> tuple[Path, Path]:
    """(config.json, model.safetensors) of ``name/`` in the Hub repo ``repo_id``."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    paths = []
    for filename in (CONFIG_FILE, WEIGHTS_FILE):
        try:
            found = hf_hub_download(
                repo_id, f"{name}/{filename}", revision=revision, cache_dir=cache_dir
            )
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"Could not fetch {name}/{filename} from the Hugging Face repo {repo_id!r}: "
                f"{exc.__class__.__name__}. Check the repo id and name, or go online once so "
                "the files are cached."
            ) from exc
        paths.append(Path(found))
    return paths[0], paths[1]
