"""Export judgements as JSONL (one judgement per line) or CSV (one row per candidate), and read
both back.

CSV is long format because that is what spreadsheets and pandas want: each row is one candidate
of one judgement, with the judgement's fields repeated and one `score.<part>` column per score
part. Floats are written with repr so both formats round-trip exactly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from ensemble.errors import EnsembleError
from ensemble.outputs import replace_file
from ensemble.ratings.judgement import Candidate, Judgement

FORMATS = ("csv", "jsonl")
_SCORE_PREFIX = "score."
_JUDGEMENT_COLUMNS = ["judgement_id", "uid", "created_at", "session_id", "input_fingerprint",
                      "model_version", "index_version", "app_version", "instruments", "settings",
                      "verdict", "ties", "reason", "flags", "local_id"]
_CANDIDATE_COLUMNS = ["candidate", "chunk_id", "source", "start_s", "model_rank",
                      "shown_position", "listen_seconds", "human_rank", "rating", "is_best"]


def write_export(judgements: list[Judgement], fmt: str, out: str | Path | TextIO) -> int:
    """Write judgements to a path (atomically: a reader never sees half a file) or a stream."""
    if fmt not in FORMATS:
        raise EnsembleError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    writer = _write_jsonl if fmt == "jsonl" else _write_csv
    if not isinstance(out, str | Path):
        writer(judgements, out)
        return len(judgements)
    path = Path(out)
    try:
        with replace_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as stream:
            writer(judgements, stream)
    except OSError as exc:
        raise EnsembleError(f"Cannot write the export to {path}: {exc.strerror or exc}.") from exc
    return len(judgements)


def read_export(path: str | Path, fmt: str | None = None) -> list[Judgement]:
    """Read a file written by `write_export`; the format defaults to the file's suffix."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise EnsembleError(f"Cannot tell the format of {path}; name it .csv or .jsonl.")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnsembleError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    try:
        return _read_jsonl(text) if fmt == "jsonl" else _read_csv(text)
    except (ValueError, KeyError) as exc:
        raise EnsembleError(f"{path} is not a ratings export ({exc}).") from exc


def jsonl_line(judgement: Judgement) -> str:
    """One judgement as a JSONL line (the Hub mirror writes the same lines as the export)."""
    return json.dumps(judgement.to_dict(), allow_nan=False) + "\n"


def _write_jsonl(judgements: Iterable[Judgement], stream: TextIO) -> None:
    for j in judgements:
        stream.write(jsonl_line(j))


def _read_jsonl(text: str) -> list[Judgement]:
    return [Judgement.from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]


def _write_csv(judgements: list[Judgement], stream: TextIO) -> None:
    parts = sorted({name for j in judgements for c in j.candidates for name in c.scores})
    writer = csv.writer(stream)
    writer.writerow(_JUDGEMENT_COLUMNS + _CANDIDATE_COLUMNS + [_SCORE_PREFIX + p for p in parts])
    for j in judgements:
        head = [j.id, j.uid, j.created_at, j.session_id, j.input_fingerprint, j.model_version,
                j.index_version, j.app_version, json.dumps(j.instruments), json.dumps(j.settings),
                j.verdict, json.dumps(j.ties), j.reason, json.dumps(j.flags), j.local_id]
        human_rank = {c: pos + 1 for pos, c in enumerate(j.ranking or [])}
        shown_position = {c: pos + 1 for pos, c in enumerate(j.shown_order)}
        for i, cand in enumerate(j.candidates):
            writer.writerow(head + [
                i, cand.chunk_id, cand.source, repr(cand.start_s), cand.rank, shown_position[i],
                repr(j.listen_seconds[i]), human_rank.get(i, ""),
                j.ratings[i] if j.ratings is not None else "",
                "" if j.best is None else int(j.best == i),
            ] + [repr(cand.scores[p]) if p in cand.scores else "" for p in parts])


def _read_csv(text: str) -> list[Judgement]:
    groups: dict[str, list[dict[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(text, newline="")):
        groups.setdefault(row["uid"], []).append(row)
    return [_judgement_from_rows(sorted(rows, key=lambda r: int(r["candidate"])))
            for rows in groups.values()]


def _judgement_from_rows(rows: list[dict[str, str]]) -> Judgement:
    first = rows[0]
    candidates = [
        Candidate(
            chunk_id=r["chunk_id"], source=r["source"], start_s=float(r["start_s"]),
            scores={k[len(_SCORE_PREFIX):]: float(v) for k, v in r.items()
                    if k.startswith(_SCORE_PREFIX) and v != ""},
            rank=int(r["model_rank"]),
        )
        for r in rows
    ]
    human = [r["human_rank"] for r in rows]
    best = [i for i, r in enumerate(rows) if r["is_best"] == "1"]
    return Judgement(
        id=_int_or_none(first["judgement_id"]),
        uid=first["uid"],
        created_at=first["created_at"] or None,
        session_id=first["session_id"],
        input_fingerprint=first["input_fingerprint"],
        candidates=candidates,
        shown_order=sorted(range(len(rows)), key=lambda i: int(rows[i]["shown_position"])),
        listen_seconds=[float(r["listen_seconds"]) for r in rows],
        ranking=(sorted(range(len(rows)), key=lambda i: int(human[i]))
                 if all(human) else None),
        ratings=[int(r["rating"]) for r in rows] if all(r["rating"] for r in rows) else None,
        best=best[0] if best else None,
        instruments=json.loads(first["instruments"]),
        settings=json.loads(first["settings"]),
        model_version=first["model_version"],
        index_version=first["index_version"],
        app_version=first["app_version"],
        # Exports written before these columns existed read as plain, unflagged rankings.
        verdict=first.get("verdict") or "ranking",
        ties=json.loads(first.get("ties") or "null"),
        reason=first.get("reason") or "",
        flags=json.loads(first.get("flags") or "[]"),
        local_id=first.get("local_id") or "",
    )


def _int_or_none(text: str) -> int | None:
    return int(text) if text else None
