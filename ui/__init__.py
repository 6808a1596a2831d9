"""Small helpers shared by the pages: routing and toasts, number boxes and setting widgets, run pickers and a run's
settings in words, the job queue's controls, and text made safe for Markdown. The data source, the device and the
models, and the Build page's drafts have modules of their own (data_picker, model_cache, drafts).

UI glue only; the product's logic lives in cifar_core.
"""

from __future__ import annotations

import hashlib
import math
import os
import re

import streamlit as st

from cifar_core import config as configs
from cifar_core import files, presets, runs, sources
from ui import drafts  # imports nothing of this package

# Every widget whose choice should outlive a visit to another page: Streamlit keeps its value itself, with no Session
# State written before it (writes an interrupted rerun could lose, leaving widgets at their own defaults).
KEEP = {"persist_state": "session"}
# Plotly's toolbar off for small charts: on a phone it lay over their legends and bars, and they need no zoom
NO_TOOLBAR = {"displayModeBar": False}


def through_router(page_path: str) -> None:
    """Called first by every page: a page run that did not come through app.py (Streamlit's legacy pages/-folder
    mode, on a deep link into a fresh server) goes to app.py, which forwards it back here with its query."""
    if not st.session_state.get("routed"):
        st.session_state["deep_link"] = (page_path, st.query_params.to_dict())
        st.switch_page("app.py")
    drafts.keep_draft()


def toast_after_rerun(text: str) -> None:
    """A toast for the next run of the app (app.py shows it): one made just before st.rerun() was lost, and a
    rename or a deletion went unconfirmed."""
    st.session_state.setdefault("_toasts", []).append(text)


def show_toasts() -> None:
    for text in st.session_state.pop("_toasts", []):
        st.toast(text)


def forward_deep_link() -> None:
    link = st.session_state.pop("deep_link", None)
    if link:
        st.session_state["routed"] = True
        st.switch_page(link[0], query_params=link[1] or None)


def scroll_to(anchor: str) -> None:
    """Brings the heading with this anchor into view (after a click that changed what it shows)."""
    st.html(f"<script>parent.document.getElementById({anchor!r})?.scrollIntoView({{behavior: 'smooth'}});"
            "</script>", unsafe_allow_javascript=True)


def kept_uploads(key: str, label: str, types: list[str]) -> list[tuple[str, bytes]]:
    """A multi-file uploader whose files survive a visit to another page: Streamlit forgets an uploader's files
    when it is not drawn, so the (name, bytes) pairs are kept here until the user removes them or uploads others."""
    store = st.session_state.setdefault("_uploads", {})
    returning = key not in st.session_state  # the uploader was not drawn in the last run (another page was)
    uploads = st.file_uploader(label, type=types, accept_multiple_files=True, key=key)
    if uploads:
        store[key] = [(f.name, f.getvalue()) for f in uploads]
    elif not returning and st.session_state.get(f"{key}_seen"):
        store.pop(key, None)  # the user removed the files from the uploader itself
    st.session_state[f"{key}_seen"] = bool(uploads)
    files = store.get(key, [])
    if files and not uploads:
        row = st.columns([4, 1], vertical_alignment="center")
        row[0].caption("The file kept from before." if len(files) == 1 else f"The {len(files)} files kept from before.")
        if row[1].button("Remove them", key=f"{key}_clear"):
            store.pop(key, None)
            st.rerun()
    return files


def number_input(label: str, **kwargs):
    """st.number_input with no bounds. Given min_value or max_value, Streamlit keeps a typed value outside them in
    the box, in red, while the page goes on with the last value inside them: a trial count of 0 started 10 trials.
    Without bounds the page gets what the box shows, and the engine's own check says what is wrong with it.

    A whole-number box (an int step) is a float box underneath: Streamlit's integer box reads what is typed with
    JavaScript's parseInt, so "1e12" arrived as 1 and "2.5" as 2, without a word. Here it returns an int when the
    typed number is whole and the float otherwise, which every check of a whole number (config, spec,
    bounded_number) refuses by name."""
    whole = isinstance(kwargs.get("step"), int) and not isinstance(kwargs.get("step"), bool)
    if whole:
        kwargs["step"] = float(kwargs["step"])
        if isinstance(kwargs.get("value"), int):
            kwargs["value"] = float(kwargs["value"])
        if kwargs.get("format") is None:
            kwargs["format"] = "%g"  # JavaScript's own digits: 50000, not 50000.00 or 5e+04
    value = st.number_input(label, **kwargs)
    # Beyond 2**53 a JavaScript number is no longer exact, and its 300 digits would fill a message: it stays a float.
    if whole and isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def percent_column(help_: str | None = None):
    """A table column of fractions shown as percentages with one decimal, 41.0% beside 48.5%: Streamlit's "percent"
    format alone drops the decimals it can (41% beside 48.5%), and its step of 0.001 fixes them at one. It cuts
    rather than rounds (0.15999 read 15.9% beside a metric's 16.0%), so the values go through rounded() first."""
    return st.column_config.NumberColumn(format="percent", step=0.001, help=help_)


def rounded(rows: list[dict], columns: tuple[str, ...]) -> list[dict]:
    """The rows with those columns' fractions rounded to the 0.1% a percent_column shows."""
    return [{k: round(v, 3) if k in columns and isinstance(v, float) else v for k, v in row.items()} for row in rows]


def bounded_number(label: str, low: int, high: int, value: int, key: str, **kwargs) -> int | None:
    """A whole number from low to high (ui.number_input); outside them, or empty, a sentence under the box that
    names it and what is allowed, and None."""
    number = number_input(label, value=value, step=kwargs.pop("step", 1), key=key, **kwargs)
    if number is None or not isinstance(number, int) or not low <= number <= high:
        st.error(f"{label} must be a whole number from {low:,} to {high:,}"
                 + (", not empty." if number is None else f", got {number:,}."))
        return None
    return int(number)


def setting_widget(name: str, key: str, default):
    """The Train page's widget of one TrainConfig field, made from the field's metadata (type, bounds, choices,
    step, label and help: config.py), starting at `default` and kept across pages by Streamlit itself
    (persist_state="session"). No Session State write before the widget: when a rerun was interrupted while a new
    model's widgets were being drawn (a click right after choosing the model), such writes were lost and the
    widgets fell back to False and their lower bounds (the browser test caught filter_learning_rate at 0.0)."""
    meta, kind = configs.FIELDS[name].metadata, configs.kind(name)
    common = {"key": key, "help": configs.describe(name, default), **KEEP}
    label = configs.label(name)
    if kind is bool:
        return st.checkbox(label, bool(default), **common)
    if meta["choices"]:
        choices = list(meta["choices"])
        return st.selectbox(label, choices, index=choices.index(default) if default in choices else 0, **common)
    if kind is str:
        return st.text_input(label, "" if default is None else str(default), **common)
    # No bounds (ui.number_input): a value out of range is named under its box (config.setting_problem, the same
    # rule config_from_dict applies), and the page does not start it.
    # An optional field (empty: all images, no time budget) may be None, and the user can clear it to None again.
    placeholder = ("all" if name == "limit" else "none") if configs.optional(name) else None
    if kind is float:  # %g: a learning rate of 1e-9 reads 1e-09, where a fixed number of decimals read 0.00
        value = number_input(label, value=None if default is None else float(default),
                             step=float(meta["step"] or 0.01), format="%g", placeholder=placeholder, **common)
    else:
        value = number_input(label, value=None if default is None else int(default), step=1,
                             placeholder=placeholder, **common)
    problem = configs.setting_problem(name, value)
    if problem:  # under its box: on a phone the form's own message is a long scroll away
        st.error(setting_error(problem))
    return value


def evaluation_request(ref: str) -> dict:
    """The Evaluate page's choices for evaluating ref at once, on the split and data source it shows now: a button
    that opened Evaluate with the model chosen still left the evaluation to a second click."""
    split = st.session_state.get("eval_split", "test")
    from ui import data_picker  # here: data_picker imports this package

    choice = st.session_state.get("eval_source") or data_picker.data_choice()
    return {"model_chosen": ref, "eval_request": (ref, split, choice)}  # the Model box follows model_chosen


def open_page(page: str, choices: dict) -> None:
    """Goes to page with some of its widgets set (key -> value), as if the user had chosen them there. The run ends
    at the switch, so the writes cannot be lost to an interrupted rerun; the widgets keep them (persist_state)."""
    st.session_state.update(choices)
    st.switch_page(page)


def run_title(run_id: str) -> str:
    """'name (run id)', or the run id alone when the run has no name of its own."""
    label = runs.run_label(runs.run_path(run_id))
    return run_id if label == run_id else f"{label} ({run_id})"


def run_select(label: str, run_ids: list[str], default: str, key: str, other: str | None = None) -> str:
    """A selectbox of runs shown by run_title, on `default`. Streamlit's frontend keeps the text a closed box showed
    for its key, so after a rename the box went on naming the run by its old name until a reload: the key carries a
    digest of the titles, and a box made anew because a title changed stays on the run it showed. A box made anew
    does not start on `other` (a box beside it) while there is another run: after a delete, Run A and Run B had
    both started on the same run."""
    titles = {run_id: run_title(run_id) for run_id in run_ids}
    digest = hashlib.sha256("\0".join(titles.values()).encode("utf-8", "backslashreplace")).hexdigest()[:8]
    shown = st.session_state.get(f"{key}_shown")  # (digest, run id) of the last run of this box
    if shown and shown[0] != digest and shown[1] in titles:
        start = shown[1]  # made anew for a new title: on the run it showed, even one the box beside it shows too
    else:
        start = default if default != other else next((r for r in run_ids if r != other), default)
    run_id = st.selectbox(label, run_ids, index=run_ids.index(start), key=f"{key}_{digest}", format_func=titles.get)
    st.session_state[f"{key}_shown"] = (digest, run_id)
    return run_id


def run_settings(run_dir) -> str:
    """One line of a run's own settings (model, epochs, data), so that nobody takes the New run form for them."""
    try:
        model_spec, config = runs.read_spec_and_config(run_dir)
    except (runs.RunError, ValueError):
        return "This run's settings cannot be read."
    source = sources.app_label(config.data) if config.data else "the default data source"
    epochs = (f"a time budget of {minutes(config.minutes)}" if config.minutes is not None
              else f"{config.epochs} epoch" + ("" if config.epochs == 1 else "s"))
    # and what differs from the settings the model starts from (a learning rate typed in had gone unsaid)
    start = presets.train_config_for(model_spec)
    changed = [f"{configs.label(name).lower()} {configs.in_words(getattr(config, name))}"
               for name in (*configs.fields_in("basic"), *configs.fields_in("recipe"))
               if name not in ("epochs", "minutes", "batch_size", "data", "limit")
               and getattr(config, name) != getattr(start, name)]
    return (f"This run's settings: model {md_escape(model_spec.name)}, {epochs}, batch size "
            f"{config.batch_size}, data {md_escape(source)}" + (f" (first {config.limit:,} images)" if config.limit
                                                              else "")
            + (f"; changed from the model's defaults: {', '.join(map(md_escape, changed))}" if changed else "") + ".")


def problem(error) -> str:
    """An engine's exception (or message) as a page shows it: escaped for Markdown, without the server's folders (a
    data source's whole path had been shown by Evaluate and Runs, the seventh attack), and a file gone from under the
    page (a run deleted in another session) said in words instead of "[Errno 2] ... '/srv/...'"."""
    if isinstance(error, FileNotFoundError):
        name = os.path.basename(str(error.filename or "")) or "a file"
        error = (f"This page's {name} is no longer there: its run may have been deleted or renamed meanwhile. "
                 "Choose again.")
    elif isinstance(error, OSError) and str(error).startswith("[Errno") and error.strerror:  # Python's own words
        name = os.path.basename(str(error.filename or "")) or "a file"
        error = f"The server could not use {name} ({error.strerror.lower()}); whoever runs it can mend that."
    return md_escape(sources.without_server_paths(str(error)))


def setting_error(text) -> str:
    """An engine's message about a training setting, as the page's widgets name it: "The training setting minutes"
    (the CLI's and config.json's name) becomes "The setting 'Time budget (minutes)'"; shown as problem() shows it."""
    def named(match):
        name = match.group(1)
        return f"The setting '{configs.label(name)}'" if name in configs.FIELDS else match.group(0)
    if isinstance(text, OSError):  # a full disk, a vanished file: problem's words
        return problem(text)
    return problem(re.sub(r"The training setting (\w+)", named, str(text)))


def sentence(text: str) -> str:
    """A message as a sentence: starting with a capital letter, unless it starts with a setting's or a field's name
    (logit_scale), which is spelt as the file and the code spell it."""
    text = str(text)
    if "_" in text.split(" ", 1)[0]:
        return text
    return text[:1].upper() + text[1:]


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$])")


def md_escape(text: str) -> str:
    """Text that st.markdown shows literally (class names come from folder names, which a user chose); a file name
    that is not UTF-8 shows its bytes as escapes (\\udcff), where it broke the page."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", files.shown(text))


def duration(seconds: float | None) -> str:
    """A time as a person reads it; "–" for none, or for one no clock gives (a torn record's 1e308 s)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    if seconds < 1:
        return "under 1 s"
    if seconds >= 1000 * 3600:
        return "over 1,000 h"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def minutes(value: float) -> str:
    """A time budget in words: '1 minute', '0.5 minutes' ('1 minutes' had been written)."""
    return f"{value:g} minute" + ("" if value == 1 else "s")


def compact(count: int) -> str:
    """658546 -> '658.5 k', 15579550 -> '15.58 M', 12345678901 -> '12.35 G': short enough for a metric tile; the
    exact count is in the table."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.2f} G"
    if count >= 1_000_000:
        return f"{count / 1e6:.2f} M"
    return f"{count / 1e3:.1f} k" if count >= 10_000 else f"{count:,}"


def slug(name: str) -> str:
    """A safe file name stem."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "model"


# ---- the job queue (Train and Runs pages)

def queue_controls(run_id: str, key: str) -> bool:
    """A queued run's place with Move up and Cancel buttons; True when the queue changed (the caller reruns)."""
    from cifar_core import jobs

    position = jobs.queue_position(run_id)
    if position is None:
        return False
    c = st.columns([3, 1, 1])
    ahead = "the jobs ahead of it end" if position > 1 else "the job ahead of it ends"
    c[0].info(f"Queued, {jobs.ordinal(position)}: it starts when {ahead}.")
    try:
        if c[1].button("Move up", key=f"{key}_up_{run_id}", disabled=position == 1):
            jobs.move_up(run_id)
            return True
        if c[2].button("Cancel", key=f"{key}_cancel_{run_id}"):
            jobs.cancel_queued(run_id)
            return True
    except runs.RunError as e:
        st.error(problem(e))
    return False


def diff_table(rows: list[dict], name: str, where: bool = False) -> list[dict]:
    """compare's rows as a table: values shown as text (a column may mix numbers, names and None); a training
    setting by its label on the Train page ('Time budget (minutes)', not minutes)."""
    def shown(key, value):
        if name == "setting" and key == "data" and isinstance(value, str):  # a source as the pages name it, never
            return sources.app_label(value) if value else "the default"     # by the server's path to it
        return "–" if value is None else str(value)

    def field(key):
        return configs.label(key) if name == "setting" and key in configs.FIELDS else key

    return [{**({"where": r["where"]} if where else {}), name: field(r["field"]), "A": shown(r["field"], r["a"]),
             "B": shown(r["field"], r["b"])} for r in rows]
