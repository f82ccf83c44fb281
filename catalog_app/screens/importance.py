"""Importance: accuracy as units are switched off, by description group, against random orders.

Reads what ``python -m milan_core ablate`` stored: one curve per order, the random orders as a
band (mean ± one standard deviation over seeds, with min and max dotted), and the class-specific
check table.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from catalog_app.common import open_catalog
from catalog_app.text import markdown_text
from milan_core.applications.importance import RANDOM, summarise_curves
from milan_core.catalog.browse import has_ablations

HOW = "python -m milan_core ablate --catalog CATALOG --images ../shared/data/imagenet-samples"


def curves_figure(summary) -> go.Figure:
    figure = go.Figure()
    band = summary[summary.curve == RANDOM]
    if not band.empty:
        upper, lower = band.accuracy + band.sd, band.accuracy - band.sd
        figure.add_trace(go.Scatter(x=band.fraction, y=upper, line={"width": 0}, showlegend=False, hoverinfo="skip"))
        figure.add_trace(
            go.Scatter(
                x=band.fraction,
                y=lower,
                fill="tonexty",
                line={"width": 0},
                fillcolor="rgba(128,128,128,0.3)",
                name="random ± sd",
                hoverinfo="skip",
            )
        )
        for edge in ("min", "max"):
            figure.add_trace(
                go.Scatter(
                    x=band.fraction,
                    y=band[edge],
                    line={"color": "grey", "dash": "dot", "width": 1},
                    name=f"random {edge}",
                    showlegend=False,
                )
            )
        figure.add_trace(go.Scatter(x=band.fraction, y=band.accuracy, line={"color": "grey"}, name="random (mean)"))
    for name, curve in summary[summary.curve != RANDOM].groupby("curve"):
        figure.add_trace(go.Scatter(x=curve.fraction, y=curve.accuracy, mode="lines+markers", name=name))
    figure.update_layout(
        xaxis_title="fraction of units switched off",
        yaxis_title="top-1 accuracy",
        yaxis_tickformat=".0%",
        xaxis_tickformat=".0%",
    )
    return figure


def main() -> None:
    st.title("Importance")
    catalog = open_catalog()
    if catalog is None:
        st.stop()
    if not has_ablations(catalog):
        st.info(f"No ablation results in this catalog yet; make some with: {HOW}")
        return
    studies = catalog.ablations()
    labels = {
        row.ablation_id: f"{row.run_id} · {', '.join(row.layers)} · {row.n_images} images of {row.images}"
        for row in studies.itertuples()
    }
    chosen = st.selectbox("Study", list(labels), format_func=labels.get, key="study", bind="query-params")
    study = studies[studies.ablation_id == chosen].iloc[0]
    st.caption(
        markdown_text(
            f"{study.n_units} units of {', '.join(study.layers)}, descriptions by {study.describer}; "
            f"{study.n_images} labelled images; stored {study.created_at:%Y-%m-%d %H:%M}"
        )
    )
    summary = summarise_curves(catalog.ablation_curves(chosen))
    st.plotly_chart(curves_figure(summary), width="stretch")
    checks = catalog.ablation_checks(chosen)
    if not checks.empty:
        st.subheader("Class-specific check")
        st.caption(
            "Accuracy drop (points) on the concept's images and on the others when the units whose "
            "descriptions mention the concept are switched off, and on the concept's images when as "
            "many random units are (mean ± sd over seeds)."
        )
        table = checks.assign(
            drop_on_concept=100 * (checks.concept_before - checks.concept_after),
            drop_on_others=100 * (checks.other_before - checks.other_after),
            random_drop_on_concept=100 * (checks.concept_before - checks.random_concept_after),
            random_sd=100 * checks.random_concept_sd,
        )[
            [
                "concept",
                "n_units",
                "n_concept_images",
                "drop_on_concept",
                "drop_on_others",
                "random_drop_on_concept",
                "random_sd",
            ]
        ]
        st.dataframe(
            table,
            hide_index=True,
            column_config={c: st.column_config.NumberColumn(format="%.1f") for c in table.columns[3:]},
        )


main()
