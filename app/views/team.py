"""Team (admins): how well annotators agree, and the texts to review.

Review lists texts the annotators disagree on and texts the latest model confidently puts under
another label (likely mislabels); a decision records the gold label and who gave it. Exports and
training use gold where it exists.
"""

from __future__ import annotations

import streamlit as st

from app import ui
from db.errors import LabelwiseError
from db.queue import item_for
from db.review import agreement, disagreements, set_gold
from db.runs import latest_version

project = ui.require_project()
settings = ui.settings()
me = ui.require_admin()
st.title("Team and review", anchor=False)
ui.show_flash()


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


stats = agreement(settings, project.id, project.labels)
c1, c2 = st.columns(2)
c1.metric("Krippendorff's alpha", fmt(stats.alpha))
c2.metric("Texts labelled by two or more", stats.items)
if stats.pairs:
    st.dataframe([{"annotator": p.first, "with": p.second, "shared texts": p.shared,
                   "Cohen's kappa": p.kappa} for p in stats.pairs], hide_index=True)
    st.dataframe([{"label": k, "alpha (this label vs the rest)": v}
                  for k, v in stats.per_label_alpha.items()], hide_index=True)
else:
    st.caption("No text has two annotators yet: raise the overlap or the agreement share in "
               "Settings.")


def decide(example_id: int, key: str) -> None:
    choice = st.session_state[key]
    try:
        set_gold(settings, project.id, example_id, None if choice == "(no gold)" else choice, me.name)
    except LabelwiseError as exc:
        ui.flash(str(exc), "error")
    else:
        ui.flash(f"Gold label cleared for text {example_id}." if choice == "(no gold)"
                 else f"Gold label saved for text {example_id}.")


def review_row(example_id: int, text: str, given: str, gold: str | None) -> None:
    with st.container(border=True):
        st.text(text[:600])
        left, right = st.columns([3, 1])
        left.text(given)
        options = ["(no gold)", *project.labels]
        key = f"gold-{example_id}"
        right.selectbox("Gold label", options, index=options.index(gold) if gold in options else 0,
                        key=key, on_change=decide, args=(example_id, key))


st.subheader("Disagreements", anchor=False)
found = disagreements(settings, project.id, limit=50)
if not found:
    st.caption("None.")
for d in found:
    review_row(d.example_id, d.text, " · ".join(f"{who}: {label}" for who, label in d.labels), d.gold)

st.subheader("Likely mislabels", anchor=False)
version = latest_version(settings, project.id)
suspects = (version.metrics.get("suspects") or []) if version else []
if not suspects:
    st.caption("None: the latest model agrees with the labels it was trained on "
               "(or there is no model yet).")
for s in suspects[:50]:
    item = item_for(settings, project.id, s["example_id"])
    if item is not None:
        review_row(item.example_id, item.text,
                   f"given {s['given']}; model v{version.version} says {s['predicted']} "
                   f"({s['confidence']:.0%})", None)
