"""The Build page's model kept across reloads: saved under the runs folder's .drafts/ as it changes, its id in every
page's URL (?draft=<id>), and taken back by a new session."""

from __future__ import annotations

import os
import re
import secrets
import time

import streamlit as st

from cifar_core import files, runs, spec_io
from cifar_core import spec as specs


def keep_draft() -> None:
    """The Build page's model survives a reload of any page: its draft's id rides in every page's URL (?draft=),
    and a new session (a reload) takes the model back from it. Only Build's own URL had it, so a reload on Train
    lost the edited model for good."""
    draft_id = st.session_state.get("draft_id") or (st.session_state.get("draft_opened") or (None,))[0]
    if draft_id:
        if st.query_params.get("draft") != draft_id:
            st.query_params["draft"] = draft_id
    elif "spec" not in st.session_state:
        spec = load_draft(st.query_params.get("draft"))
        if spec is not None:
            st.session_state["spec"] = spec


_DRAFT_ID = re.compile(r"^[A-Za-z0-9_-]{8,32}$")


def _draft_path(draft_id: str):
    return runs.default_runs_dir() / ".drafts" / f"{draft_id}.json"


def save_draft(spec) -> str:
    """Saves the Build page's model under the runs folder's .drafts/ (once per change); returns its id for the
    URL (?draft=<id>), so that a reload of the page finds it again. A draft this session opened from its URL is
    another's too (a duplicated tab, a shared link): it is shared while unchanged, and the first change goes to a
    draft of this session's own. Written to in place, two tabs had overwritten each other's model (the seventh
    attack)."""
    text = spec_io.to_json(spec)
    draft_id = st.session_state.get("draft_id")
    if not draft_id or not _DRAFT_ID.match(draft_id):
        opened = st.session_state.get("draft_opened")  # (id, text) of the draft taken from the URL
        if opened and opened[1] == text:
            return opened[0]
        draft_id = st.session_state["draft_id"] = secrets.token_urlsafe(12)
        _prune_drafts(_draft_path(draft_id).parent)
    if st.session_state.get("draft_saved") != text:
        try:
            path = _draft_path(draft_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            files.write_json(path, spec_io.to_dict(spec))
            st.session_state["draft_saved"] = text
        except OSError:
            pass  # a read-only runs folder: the draft lives in this session only
    return draft_id


DRAFT_DAYS = 30


def _prune_drafts(folder) -> None:
    """Removes drafts untouched for DRAFT_DAYS, as each new session starts one: every session that opens Build saves
    a draft, and nothing else ever removes them."""
    cutoff = time.time() - DRAFT_DAYS * 86400
    try:
        old = [e.path for e in os.scandir(folder) if e.name.endswith(".json") and e.stat().st_mtime < cutoff]
    except OSError:
        return
    for path in old:
        try:
            os.unlink(path)
        except OSError:
            pass


def load_draft(draft_id: str | None):
    """The draft saved as `draft_id`, or None when there is none (or it is not a valid spec any more)."""
    if not draft_id or not _DRAFT_ID.match(draft_id):
        return None
    raw = files.read_json(_draft_path(draft_id))
    try:
        spec = spec_io.from_dict(raw) if raw is not None else None
    except (specs.SpecError, TypeError, ValueError):
        return None
    if spec is not None:
        st.session_state["draft_opened"] = (draft_id, spec_io.to_json(spec))
    return spec
