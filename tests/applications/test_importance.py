"""Importance by ablation on a case with a known answer: classifier units wired to their classes.

In the fixture catalog each classifier unit is described by its own class name, so the units that
mention "cat" are exactly the cat logits: switching them off must cost the cat photos their
accuracy, leave the others nearly alone, and hurt more than as many random logits.
"""

from __future__ import annotations

import pandas as pd

from milan_core.applications import importance
from milan_core.applications.evaluation import AblationEvaluator, LabelledProbe
from milan_core.catalog import Catalog
from milan_core.models import LoadedModel


def classifier_units(catalog_path) -> pd.DataFrame:
    with Catalog(catalog_path) as catalog:
        run = catalog.run()
        describer = importance.pick_describer(catalog, run.run_id, None)
        return importance.layer_units(catalog, run.run_id, ["classifier"], describer)


def test_switching_off_cat_units_hurts_cats_more_than_others_and_than_random(
    lite0: LoadedModel, cat_labelled: LabelledProbe, described_catalog
) -> None:
    units = classifier_units(described_catalog)
    evaluator = AblationEvaluator(lite0, cat_labelled, ["classifier"])
    check = importance.class_check(evaluator, units, "cat")
    assert check.n_concept_images == 8 and check.n_other_images == 8
    assert 5 <= check.n_units <= 12  # ImageNet's cats: five domestic kinds and wildcats (9 here)
    drop_cats = check.concept_before - check.concept_after
    assert check.concept_before >= 0.5 and check.concept_after < check.concept_before / 2
    assert drop_cats > check.other_before - check.other_after
    assert drop_cats > check.concept_before - check.random_concept_after
    assert "cat" in importance.format_checks([check])


def test_curves_have_a_random_band_and_groups_end_where_their_units_end(
    lite0: LoadedModel, cat_labelled: LabelledProbe, described_catalog
) -> None:
    units = classifier_units(described_catalog)
    evaluator = AblationEvaluator(lite0, cat_labelled, ["classifier"])
    curves = importance.importance_curves(evaluator, units, ["animal"], seeds=5, steps=3)
    animal = curves[curves.curve == "animal"].sort_values("step")
    n_animal = len(importance.unit_order(units, "animal"))
    assert animal.n_ablated.iloc[-1] == n_animal and animal.fraction.iloc[-1] == n_animal / 1000
    # a photo whose own class logit is off cannot be right any more
    switched_off = {unit for _, unit in importance.unit_order(units, "animal")}
    lost = sum(int(t) in switched_off for t in cat_labelled.targets)
    assert lost >= 6  # the cat photos' class reads as an animal in WordNet
    assert animal.accuracy.iloc[-1] <= 1 - lost / len(cat_labelled.targets) < animal.accuracy.iloc[0]
    random = curves[curves.curve == importance.RANDOM]
    assert sorted(random.seed.unique()) == [0, 1, 2, 3, 4]
    assert n_animal in set(random.n_ablated)  # a reference at the group's last point
    summary = importance.summarise_curves(curves)
    assert (summary[summary.curve == importance.RANDOM].sd > 0).any()
