"""How a demo person's outfits differ: counts within the configured range, and shape or colour-only changes."""

from __future__ import annotations

from itertools import combinations

import pytest

from dlcr_data.demo import DemoConfig, Plan
from dlcr_data.demo.identity import HAIR_COLOURS, TOPS, sample_traits, shared_wardrobe

LONG_LEGS = ("trousers", "jeans")  # the same leg cover: an outline cannot tell them apart


def _outline(outfit):
    """Sleeve length and leg cover, worked out here rather than with `identity.silhouette` (under test)."""
    return TOPS[outfit.top], "long" if outfit.bottom in LONG_LEGS else outfit.bottom


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
            assert _outline(a) != _outline(b), (person.pid, a, b)
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


def test_a_shared_wardrobe_dresses_strangers_alike_and_keeps_every_change_a_change():
    people = list(_people(wardrobe=12, min_outfits=2, max_outfits=4))
    shared = set(shared_wardrobe(0, 12))
    worn = [o for p in people for o in p.outfits]
    assert len(shared) == 12
    # 60 people with 2-4 outfits: far more outfits worn than the wardrobe holds, so most come from it and are shared
    assert sum(o in shared for o in worn) >= 0.8 * len(worn)
    wearers = {o: {p.pid for p in people if o in p.outfits} for o in shared}
    assert max(len(w) for w in wearers.values()) >= 5
    for person in people:
        for a, b in combinations(person.outfits, 2):
            assert _outline(a) != _outline(b) and a.top_colour != b.top_colour, (person.pid, a, b)


def test_a_wardrobe_too_small_for_a_change_falls_back_to_own_outfits():
    # one shared outfit: every second outfit must be the person's own, and still a shape change
    for person in _people(wardrobe=1, min_outfits=3, max_outfits=3):
        assert person.outfits[0] == shared_wardrobe(0, 1)[0]
        assert len({_outline(o) for o in person.outfits}) == 3


def test_a_shared_wardrobe_with_colour_changes_keeps_each_persons_garment_types():
    for person in _people(wardrobe=24, min_outfits=3, max_outfits=3, garment_change="colour"):
        assert len({(o.top, o.bottom) for o in person.outfits}) == 1
        assert len({o.top_colour for o in person.outfits}) == 3


def test_distinct_traits_widen_builds_and_hair_but_keep_the_other_draws():
    subtle = [sample_traits(0, pid) for pid in range(1, 301)]
    distinct = [sample_traits(0, pid, "distinct") for pid in range(1, 301)]
    assert [t.skin for t in subtle] == [t.skin for t in distinct]
    assert [t.hair_style for t in subtle] == [t.hair_style for t in distinct]
    limbs = [t.limb for t in distinct]
    assert min(limbs) < 0.8 and max(limbs) > 1.25  # beyond the subtle range [0.8, 1.25]
    assert min(t.height for t in distinct) < 0.86

    # hair drawn from 11 base colours: some people's hair lies far from all six subtle ones (jitter is <= 8 %)
    def distance(colour, base):
        return sum((a - b) ** 2 for a, b in zip(colour, base, strict=True))

    assert any(min(distance(t.hair_colour, c) for c in HAIR_COLOURS) > 3000 for t in distinct)


def test_without_wardrobe_and_with_subtle_traits_the_people_are_the_ones_before_these_options():
    # wardrobe 0 and subtle traits draw exactly as before: the outfits of pid 1 of the seed-0 demo, written down
    # from the rendered demo's outfits.json before these options existed
    person = Plan(DemoConfig(wardrobe=0, traits="subtle")).people[1]
    assert tuple(o.text() for o in person.outfits) == (
        "beige plain hoodie | white shorts | white shoes",
        "brown dotted long-sleeve shirt | black trousers | red shoes",
        "white checked sleeveless top | black shorts | grey shoes",
        "black checked hoodie | grey skirt | grey shoes",
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"min_outfits": 0},
        {"min_outfits": 3, "max_outfits": 2},
        {"max_outfits": 5},
        {"garment_change": "x"},
        {"traits": "x"},
        {"wardrobe": -1},
        {"wardrobe": 1001},
    ],
)
def test_bad_outfit_options_are_refused(bad):
    with pytest.raises(ValueError, match="DemoConfig"):
        DemoConfig(**bad)
