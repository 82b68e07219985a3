"""The semi-supervised extensions: pseudo-pairs (``PseudoPairing``, ``gera.pseudo``) and partner
propagation (``Propagation``, ``PropagationObjective``, ``propagation_loss``)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gera.evaluate import retrieval
from gera.losses import info_nce, propagation_loss
from gera.methods import (METHODS, GeRA, Propagation, PseudoPairing, featured, featured_twin,
                          method_class)
from gera.objectives import ContrastiveObjective, PropagationObjective, Side
from gera.pseudo import csls, mine
from gera.settings import TrainConfig
from test_core import synthetic_world

QUICK = dict(max_steps=60, eval_every=10)


def unit(x):
    return F.normalize(x, dim=-1)


# --- weighted InfoNCE ------------------------------------------------------------------------
def test_weighted_info_nce_reduces_to_info_nce_and_ignores_scale():
    g = torch.Generator().manual_seed(0)
    za, zb = unit(torch.randn(12, 8, generator=g)), unit(torch.randn(12, 8, generator=g))
    scale = torch.tensor(np.log(1 / 0.07))
    plain = info_nce(za, zb, scale)
    assert info_nce(za, zb, scale, torch.ones(12)).item() == pytest.approx(plain.item(), rel=1e-6)
    w = torch.rand(12, generator=g)
    assert info_nce(za, zb, scale, w).item() == pytest.approx(info_nce(za, zb, scale, 5 * w).item(),
                                                              rel=1e-5)
    # a zero-weight pair still serves as a negative, but its own terms are not counted
    w0 = torch.ones(12)
    w0[3] = 0
    assert info_nce(za, zb, scale, w0).item() != pytest.approx(plain.item(), rel=1e-4)


# --- the propagation loss --------------------------------------------------------------------
def _spread_inputs(seed=0, p=4, k=5, d=16, dz=8, m=6):
    g = torch.Generator().manual_seed(seed)
    original = unit(torch.randn(p, k + 1, d, generator=g))
    neighbours = unit(torch.randn(p, k, dz, generator=g)).requires_grad_(True)
    partners = unit(torch.randn(m, dz, generator=g)).requires_grad_(True)
    targets = torch.randperm(m, generator=g)[:p]
    return original, neighbours, partners, targets


def test_propagation_loss_is_zero_without_unpaired_neighbours():
    original, nbrs, partners, targets = _spread_inputs()
    scale = torch.tensor(np.log(1 / 0.07))
    none = propagation_loss(original, nbrs, partners, targets, torch.zeros(4, 5), scale, eps=0.5)
    assert none.item() == 0.0
    some = propagation_loss(original, nbrs, partners, targets, torch.ones(4, 5), scale, eps=0.5)
    assert some.item() > 0


def test_propagation_loss_gradient_reaches_the_heads_only_and_pulls_towards_the_partner():
    original, nbrs, partners, targets = _spread_inputs(seed=1)
    original.requires_grad_(True)
    scale = torch.tensor(np.log(1 / 0.07))
    loss = propagation_loss(original, nbrs, partners, targets, torch.ones(4, 5), scale, eps=0.5)
    loss.backward()
    assert original.grad is None and nbrs.grad.abs().sum() > 0 and partners.grad.abs().sum() > 0
    # neighbours already at their anchor's partner score lower than random ones
    at_partner = partners.detach()[targets][:, None, :].expand(-1, 5, -1)
    assert propagation_loss(original.detach(), at_partner, partners.detach(), targets,
                            torch.ones(4, 5), scale, eps=0.5) < loss.detach()


def test_propagation_weights_are_the_frozen_diffusion_operator():
    """A neighbour far from the anchor in the frozen space weighs (exponentially) less."""
    scale = torch.tensor(np.log(1 / 0.07))
    anchor = torch.tensor([1.0, 0.0])
    near, far = unit(torch.tensor([1.0, 0.1])), unit(torch.tensor([0.0, 1.0]))
    original = torch.stack([anchor, near, far])[None]
    partners = unit(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    nbrs = partners[[1, 1]][None]  # both neighbours sit at the WRONG partner: equal CE
    both = propagation_loss(original, nbrs, partners, torch.tensor([0]), torch.ones(1, 2), scale, eps=0.5)
    only_near = propagation_loss(original, nbrs, partners, torch.tensor([0]), torch.tensor([[1.0, 0]]),
                                 scale, eps=0.5)
    only_far = both - only_near
    assert only_near > 50 * only_far > 0


def _world_objective(objective, n_pairs=20):
    rng = np.random.default_rng(0)
    pool_a = rng.normal(size=(120, 16)).astype(np.float32)
    pool_b = rng.normal(size=(100, 12)).astype(np.float32)
    objective.prepare(pool_a, pool_b, torch.device("cpu"), seed=0)
    torch.manual_seed(0)
    linear_a, linear_b = torch.nn.Linear(16, 8), torch.nn.Linear(12, 8)
    # unit outputs, as the real heads give
    a = Side(pool_a, lambda x: unit(linear_a(x)), "cpu")
    b = Side(pool_b, lambda x: unit(linear_b(x)), "cpu")
    rows = torch.arange(n_pairs)
    return a, b, rows


def test_beta_zero_is_exactly_contrastive_and_seen_counts_unpaired_only():
    scale = torch.tensor(np.log(1 / 0.07))
    plain = ContrastiveObjective()
    a, b, rows = _world_objective(plain)
    expected = plain.loss(plain.sample(rows, rows), a, b, scale)[0]
    off = PropagationObjective(beta=0.0, alpha=0.0)
    _world_objective(off)
    got, terms = off.loss(off.sample(rows, rows), a, b, scale)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6) and "spread" not in terms
    on = PropagationObjective(beta=1.0, alpha=0.0, spread_batch=8)
    _world_objective(on)
    batch = on.sample(rows, rows)
    total, terms = on.loss(batch, a, b, scale)
    assert terms["spread"].item() > 0
    assert total.item() == pytest.approx((terms["con"] + terms["spread"]).item(), rel=1e-6)
    seen = on.diagnostics()
    assert 0 < seen["spread_seen_a"] <= seen["unpaired_pool_a"] == 100
    assert not (on.received[0][:20] > 0).any()  # paired rows never receive a propagated partner


def test_no_unpaired_neighbour_means_no_propagation_term():
    """Every pool point is paired: the loss is exactly InfoNCE."""
    scale = torch.tensor(np.log(1 / 0.07))
    on = PropagationObjective(beta=5.0, alpha=0.0)
    a, b, _ = _world_objective(on)
    rows_a, rows_b = torch.arange(120), torch.arange(120) % 100
    batch = on.sample(rows_a, rows_b)
    total, terms = on.loss(batch, a, b, scale)
    assert terms["spread"].item() == 0.0 and total.item() == pytest.approx(terms["con"].item())


# --- pseudo-pair mining ----------------------------------------------------------------------
def test_mutual_mining_with_one_use_per_item_is_mutual_nearest_neighbours():
    rng = np.random.default_rng(0)
    za = rng.normal(size=(40, 6)).astype(np.float32)
    zb = rng.normal(size=(30, 6)).astype(np.float32)
    za /= np.linalg.norm(za, axis=1, keepdims=True)
    zb /= np.linalg.norm(zb, axis=1, keepdims=True)
    s = csls(za, zb, k=5)
    brute = {(i, int(s[i].argmax())) for i in range(40) if int(s[:, s[i].argmax()].argmax()) == i}
    found = mine(za, zb, per_b=1, limit=1000, k=5, mutual=True)
    assert set(zip(found.a.tolist(), found.b.tolist())) == brute
    assert (np.diff(found.score) <= 0).all()  # most confident first


@pytest.mark.parametrize("mutual", [True, False])
def test_mining_is_balanced_and_a_hub_does_not_take_everything(mutual):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(5, 8))
    za = centres[rng.integers(5, size=200)] + 0.3 * rng.normal(size=(200, 8))
    zb = np.concatenate([centres + 0.1 * rng.normal(size=(5, 8)), centres.mean(0, keepdims=True)])
    za = (za / np.linalg.norm(za, axis=1, keepdims=True)).astype(np.float32)
    zb = (zb / np.linalg.norm(zb, axis=1, keepdims=True)).astype(np.float32)
    found = mine(za, zb, per_b=3, limit=50, k=5, mutual=mutual)
    assert 0 < len(found) <= 50
    assert len(set(found.a.tolist())) == len(found)  # each A item at most once
    assert np.bincount(found.b, minlength=6).max() <= 3  # each B item at most per_b times
    assert len(set(found.b.tolist())) >= 4  # spread over the partners, not one hub
    assert len(mine(za, zb, per_b=3, limit=2, k=5, mutual=mutual)) == 2
    assert len(mine(za[:0], zb)) == 0


# --- the methods -----------------------------------------------------------------------------
def test_registered_with_grids_and_checked_parameters():
    assert {"pseudo", "propagation"} <= set(METHODS)
    assert featured() != "pseudo" and featured_twin() not in ("pseudo", "propagation")
    for name in ("pseudo", "propagation"):
        cls = method_class(name)
        space = cls.search_space(100, 1280, 384)
        grid = [space.complete(s) for s in space.start]
        assert len(grid) == 3 and len({tuple(sorted(g.items())) for g in grid}) == 3
        defaults = cls().get_params()
        assert all(defaults[key] == value for key, value in grid[0].items())
        assert cls.from_settings(TrainConfig(max_steps=7), 3, **grid[1]).config.max_steps == 7
    from gera.errors import GeraError
    with pytest.raises(GeraError, match="candidates"):
        PseudoPairing(candidates="test")
    with pytest.raises(GeraError, match="beta"):
        Propagation(beta=-1)
    assert PseudoPairing(weight=0.25).clone(rounds=1).get_params()["weight"] == 0.25


@pytest.mark.slow
def test_propagation_fits_and_reports_the_pool_it_reached():
    pairs, unpaired, (ta, tb, _) = synthetic_world()
    alignment = Propagation(TrainConfig(**QUICK), seed=0, beta=1.0).fit(pairs, unpaired)
    assert {"con", "geo", "spread"} <= set(alignment.history[-1])
    d = alignment.diagnostics
    assert 0 < d["spread_seen_a"] <= d["unpaired_pool_a"] == len(unpaired.a)
    assert 0 < d["spread_seen_b"] <= d["unpaired_pool_b"] == len(unpaired.b)
    r = retrieval(alignment, ta, tb)
    assert r["recall@10_a2b"] > 0.1 and r["recall@10_b2a"] > 0.1  # chance 0.033


@pytest.mark.slow
def test_pseudo_pairs_come_from_the_unpaired_pool_and_a_round_is_kept_only_if_validation_improves():
    pairs, unpaired, (ta, tb, _) = synthetic_world()
    scores = iter([0.5] * 1000)  # flat validation: nothing ever improves on the base fit

    def flat(alignment):
        return next(scores)

    method = PseudoPairing(TrainConfig(**QUICK), seed=0, rounds=3, per_b=2, ratio=1.0)
    alignment = method.fit(pairs, unpaired, validate=flat)
    d = alignment.diagnostics
    assert d["rounds_kept"] == 0 and not any(r["kept"] for r in d["rounds"])
    first = d["rounds"][0]
    assert 0 < first["pseudo_pairs"] <= len(pairs)  # ratio 1 × N in round 1
    for r in d["rounds"]:
        assert set(r["a"]) <= set(range(len(unpaired.a)))  # unpaired A items only, no test item
        assert max(np.bincount(r["b"])) <= 2  # per_b
    # each dropped round mined a larger set from the same (base) model, until nothing was new
    sizes = [r["pseudo_pairs"] for r in d["rounds"]]
    assert sizes == sorted(sizes) and (len(sizes) == 3 or sizes[-1] == sizes[-2])
    assert {0, 1} <= {row["round"] for row in alignment.history} <= {0, 1, 2, 3}
    base = GeRA(TrainConfig(**QUICK), seed=0).fit(pairs, unpaired, validate=lambda al: 0.5)
    assert np.allclose(alignment.embed_a(ta[:20]), base.embed_a(ta[:20]), atol=1e-5)  # the base


@pytest.mark.slow
def test_pseudo_rounds_that_improve_are_kept_and_mining_reads_the_latest():
    pairs, unpaired, (ta, tb, _) = synthetic_world()
    rising = iter(range(1000))
    method = PseudoPairing(TrainConfig(**QUICK), seed=0, rounds=2, candidates="unpaired")
    alignment = method.fit(pairs, unpaired, validate=lambda al: float(next(rising)))
    d = alignment.diagnostics
    assert d["rounds_kept"] == 2 and [r["kept"] for r in d["rounds"]] == [True, True]
    assert all(min(r["b"]) >= len(pairs) for r in d["rounds"])  # unpaired B items only
    assert d["rounds"][1]["pseudo_pairs"] >= d["rounds"][0]["pseudo_pairs"]
    assert alignment.steps_run == 3 * QUICK["max_steps"]  # base + 2 rounds, each run in full
    no_validation = method.fit(pairs, unpaired)  # nothing to judge a round by: none is run
    assert no_validation.diagnostics["rounds"] == [] and no_validation.diagnostics["base_val"] is None
