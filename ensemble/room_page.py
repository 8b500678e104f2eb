"""The candidate players as the page shows them, and the script that reports what they play.

Each candidate is a plain `<audio>` element (the browser's own controls, speed menu included)
fed from `ensemble.room_media`. The script, run once when the players' panel loads, does three
things: starting a player pauses the others; it counts, per candidate, media time heard at no
more than real-time pace (its live tick); and it reports every play, pause, seek and, while
playing, about one progress a second to the server, which keeps its own count
(`ensemble.room_gate`) and decides whether Submit unlocks.
"""

from __future__ import annotations

from html import escape

LOCAL_ID_KEY = "ensemble-listener"

# The browser's own id, kept in localStorage (no cookie): a returning listener is recognised
# without tracking them anywhere else. getRandomValues works on plain http too.
LOCAL_ID_JS = f"""
(...args) => {{
  let id = localStorage.getItem('{LOCAL_ID_KEY}');
  if (!id) {{
    id = Array.from(crypto.getRandomValues(new Uint8Array(16)),
                    (b) => b.toString(16).padStart(2, '0')).join('');
    localStorage.setItem('{LOCAL_ID_KEY}', id);
  }}
  args[args.length - 1] = id;
  return args;
}}
"""

PLAYERS_JS = """
const clock = () => performance.now() / 1000;
const seen = new WeakMap();
const box = (a) => a.closest('[data-slot]');
const info = (a) => {
  if (!seen.has(a)) seen.set(a, {credit: 0, pos: null, t: 0, sent: 0});
  return seen.get(a);
};
const send = (a, kind, pos) => trigger('input', {reports: [
  {slot: Number(box(a).dataset.slot), kind: kind, pos: pos, t: clock()}]});
const tick = (a) => {
  const b = box(a), need = Number(b.dataset.need), s = info(a);
  const label = b.querySelector('.tick');
  if (s.credit >= need) { b.classList.add('heard'); label.textContent = '✓ heard'; }
  else label.textContent = `heard ${s.credit.toFixed(1)} of ${need.toFixed(1)} s`;
};
const advance = (a) => {
  const s = info(a), now = clock();
  if (s.pos !== null) {
    const moved = a.currentTime - s.pos;
    if (moved > 0) s.credit += Math.min(moved, now - s.t);
  }
  s.pos = a.currentTime; s.t = now; tick(a);
};
const audio = (e) => (e.target.tagName === 'AUDIO' && box(e.target)) ? e.target : null;
element.addEventListener('play', (e) => {
  const a = audio(e); if (!a) return;
  element.querySelectorAll('audio').forEach((o) => { if (o !== a && !o.paused) o.pause(); });
  const s = info(a); s.pos = a.currentTime; s.t = clock(); s.sent = s.t;
  send(a, 'play', a.currentTime);
}, true);
element.addEventListener('timeupdate', (e) => {
  const a = audio(e); if (!a || a.paused || a.seeking) return;
  advance(a);
  const s = info(a);
  if (s.t - s.sent >= 1) { s.sent = s.t; send(a, 'progress', a.currentTime); }
}, true);
element.addEventListener('pause', (e) => {
  const a = audio(e); if (!a) return;
  advance(a); info(a).pos = null; send(a, 'pause', a.currentTime);
}, true);
element.addEventListener('seeking', (e) => {
  // A jump is not listening: close the span at the last position heard, reopen after it.
  const a = audio(e); if (!a || a.paused) return;
  const s = info(a); if (s.pos === null) return;
  send(a, 'pause', s.pos); s.pos = null; s.reopen = true;
}, true);
element.addEventListener('seeked', (e) => {
  const a = audio(e); if (!a) return;
  const s = info(a);
  if (s.reopen && !a.paused) { s.pos = a.currentTime; s.t = clock(); send(a, 'play', s.pos); }
  s.reopen = false;
}, true);
"""

PLAYERS_CSS = """
.players {display: flex; flex-direction: column; gap: 8px;}
.listen {display: flex; align-items: center; gap: 12px; flex-wrap: wrap;
  border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px 10px;}
.listen .name {font-weight: 600; min-width: 7.5em;}
.listen audio {flex: 1 1 260px; min-width: 220px; height: 40px;}
.listen .tick {min-width: 9em; font-variant-numeric: tabular-nums;
  color: var(--body-text-color-subdued);}
.listen.heard .tick {color: var(--color-accent);}
"""


def players_html(candidates: list[tuple[str, str, float]]) -> str:
    """One row per candidate: (letter, audio URL, seconds to hear), in shown order."""
    if not candidates:
        return ""
    rows = [
        f'<div class="listen" data-slot="{slot}" data-need="{need:.2f}" id="listen-{letter}">'
        f'<span class="name">Candidate {letter}</span>'
        f'<audio controls preload="auto" src="{escape(url)}"></audio>'
        f'<span class="tick">heard 0.0 of {need:.1f} s</span></div>'
        for slot, (letter, url, need) in enumerate(candidates)
    ]
    return f'<div class="players">{"".join(rows)}</div>'
