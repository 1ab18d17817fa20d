"""How a demo person's outfits differ: counts within the configured range, and shape or colour-only changes."""

from __future__ import annotations

from itertools import combinations

import pytest

from dlcr_data.demo import DemoConfig, Plan
from dlcr_data.demo.identity import TOPS

LONG_LEGS = ("trousers", "jeans")  # the same leg cover: an outline cannot tell them apart


def _people(**config):
    return Plan(DemoConfig(num_ids=60, **config)).people.values()


@pytest.mark.parametrize("low,high", [(1, 1), (2, 4), (3, 3)])
def test_outfit_counts_stay_in_the_configured_range_and_cover_it(low, high):
    counts = [len(p.outfits) for p in _people(min_outfits=low, max_outfits=high)]
    assert set(counts) == set(range(low, high + 1))


def test_shape_changes_give_every_outfit_of_a_person_its_own_outline():
    people = list(_people(min_outfits=4, max_outfits=4, garment_change="shape"))
    for person in people:
        for a, b in combinations(person.outfits, 2):
            legs_a = "long" if a.bottom in LONG_LEGS else a.bottom
            legs_b = "long" if b.bottom in LONG_LEGS else b.bottom
            assert (TOPS[a.top], legs_a) != (TOPS[b.top], legs_b), (person.pid, a, b)
            assert a.top_colour != b.top_colour


def test_colour_changes_keep_the_garment_types_and_change_the_colours():
    for person in _people(min_outfits=3, max_outfits=3, garment_change="colour"):
        assert len({(o.top, o.bottom) for o in person.outfits}) == 1
        assert len({o.top_colour for o in person.outfits}) == 3
        assert len({(o.bottom, o.bottom_colour) for o in person.outfits}) == 3


def test_free_draws_sometimes_keep_and_sometimes_change_the_outline():
    kept = changed = 0
    for person in _people(min_outfits=2, max_outfits=2, garment_change="any"):
        a, b = person.outfits
        same = TOPS[a.top] == TOPS[b.top] and (a.bottom in LONG_LEGS) == (b.bottom in LONG_LEGS)
        kept, changed = kept + same, changed + (not same)
    assert kept and changed


def test_traits_do_not_depend_on_the_outfit_options():
    a = Plan(DemoConfig(num_ids=10, min_outfits=1, max_outfits=1)).people
    b = Plan(DemoConfig(num_ids=10, min_outfits=4, max_outfits=4, garment_change="colour")).people
    assert [p.traits for p in a.values()] == [p.traits for p in b.values()]


@pytest.mark.parametrize(
    "bad", [{"min_outfits": 0}, {"min_outfits": 3, "max_outfits": 2}, {"max_outfits": 5}, {"garment_change": "x"}]
)
def test_bad_outfit_options_are_refused(bad):
    with pytest.raises(ValueError, match="DemoConfig"):
        DemoConfig(**bad)
