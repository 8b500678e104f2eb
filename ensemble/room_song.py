"""The listening room's song loop: keep a judged candidate and continue from the song's new
ending, undo the last section, see the song so far, download it performed whole."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ensemble.config import SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.perform import Ensemble
from ensemble.plots import song_timeline_figure
from ensemble.ratings import RatingsStore
from ensemble.room_config import APP_MAX_SECONDS
from ensemble.room_files import random_name
from ensemble.room_state import Input, Round, Session
from ensemble.song import Song, write_song

if TYPE_CHECKING:
    import plotly.graph_objects as go


class SongLoop:
    """Grows each session's song from the candidates its listener keeps."""

    def __init__(self, ensemble: Ensemble, store: RatingsStore) -> None:
        self.ensemble = ensemble
        self.store = store

    def keep(self, session: Session | None, letter: str | None) -> Input:
        """Append candidate ``letter`` of the judged round to the session's song and record the
        keep beside the judgement; returns the song's ending to continue from.

        Raises:
            EnsembleError: nothing performed yet, the round not judged, or no such candidate.
        """
        current, song = _song_round(session)
        if current.judgement is None:
            raise EnsembleError("Judge this round first (submit or skip); then keep the "
                                "candidate you liked and continue from it.")
        if letter not in current.shown:
            raise EnsembleError(f"Choose a candidate to keep: {', '.join(current.shown)}.")
        index = current.shown_order[current.shown.index(letter)]
        kept = current.continuations[index]
        session.song = song.keep(kept)  # type: ignore[union-attr]
        self.store.add_keep(current.judgement.uid, "+".join(kept.chunk_ids))
        return _song_ending(session.song)  # type: ignore[union-attr]

    def undo(self, session: Session | None) -> Input:
        """Drop the song's last section; returns the restored ending to continue from."""
        _, song = _song_round(session)
        session.song = song.undo()  # type: ignore[union-attr]
        return _song_ending(session.song)  # type: ignore[union-attr]

    def timeline(self, session: Session | None) -> go.Figure | None:
        """The song so far; sources are named once the current round is judged."""
        if session is None or session.song is None:
            return None
        revealed = session.round is None or session.round.judgement is not None
        return song_timeline_figure(session.song, reveal=revealed)

    def files(self, session: Session | None) -> list[Path]:
        """The whole song performed with the current round's band: song.wav, stems, song.mid and
        song.json (in the session's round folder, removed with it)."""
        current, song = _song_round(session)
        performance = self.ensemble.perform(
            song.audio, current.instruments, current.settings.get("leader")
        )
        folder = session.round_folder / random_name("song", "")  # type: ignore[union-attr]
        write_song(folder, song, performance, app_round=current.uid)
        return [folder / "song.wav", folder / "song.mid", folder / "song.json",
                *sorted((folder / "stems").glob("*.wav"))]  # fmt: skip


def _song_round(session: Session | None) -> tuple[Round, Song]:
    if session is None or session.round is None or session.song is None:
        raise EnsembleError("Perform first: the song starts with your input.")
    return session.round, session.song


def _song_ending(song: Song) -> Input:
    """The song's last APP_MAX_SECONDS, the input of the next round."""
    tail = song.audio[-int(APP_MAX_SECONDS * SAMPLE_RATE) :]
    note = f"Continuing your song ({song.duration_s:.1f} s, {len(song.sections)} section(s))."
    return Input(tail, [note], continues_song=True)
