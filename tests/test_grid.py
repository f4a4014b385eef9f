"""Planning: the objective as a fourth part, the one-factor-at-a-time grid, profiles that carry
a set-up, and the checks on options and seeds that run before anything trains."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vaebench import streams
from vaebench.contracts import Budget, EvalSettings, Grid, Profile
from vaebench.errors import ConfigError
from vaebench.runner import Choice, RunRequest, combine, plan

TINY = {"suite": "digits", "profile": "tiny", "progress": False}


def request(**changes):  # type: ignore[no-untyped-def]
    return RunRequest(**{**TINY, **changes})


def labels(units) -> list[str]:  # type: ignore[no-untyped-def]
    return [u.label for u in units]


def choice(name: str) -> Choice:
    return Choice(name, {})


def test_one_factor_at_a_time_grows_with_the_sum_of_the_parts_and_full_with_the_product() -> None:
    choices = {
        "encoder": [choice("e1"), choice("e2"), choice("e3")],
        "decoder": [choice("d1"), choice("d2")],
        "prior": [choice("p1"), choice("p2"), choice("p3")],
        "objective": [choice("o1"), choice("o2")],
    }
    baseline = {"encoder": "e2", "prior": "p3"}
    ofat = combine(choices, baseline, "ofat")
    assert len(ofat) == 1 + 2 + 1 + 2 + 1
    assert {k: c.name for k, c in ofat[0].items()} == {
        "encoder": "e2",
        "decoder": "d1",
        "prior": "p3",
        "objective": "o1",
    }
    for combo in ofat[1:]:  # each differs from the baseline in exactly one part
        assert sum(combo[k] != ofat[0][k] for k in combo) == 1
    assert len(combine(choices, baseline, "full")) == 3 * 2 * 3 * 2
    with pytest.raises(ConfigError, match="grid 'some' is not one of ofat, full"):
        combine(choices, baseline, "some")


def test_objectives_are_a_part_of_every_key_record_and_label(host) -> None:  # type: ignore[no-untyped-def]
    units = plan(request(objectives=["elbo", "iwae", "beta"], priors=["standard-normal"]), host)
    assert labels(units) == [
        "mlp-gaussian / mlp-categorical / standard-normal / elbo",
        "mlp-gaussian / mlp-categorical / standard-normal / iwae",
        "mlp-gaussian / mlp-categorical / standard-normal / beta",
    ]
    keys = {u.keys[0] for u in units}
    assert len(keys) == 3
    for unit in units:
        head = unit.record_head(0)
        assert head["combination"]["objective"] == unit.combination["objective"]
        assert head["components"]["objective"]["plugin"] == "vaebench"
        assert head["seeding"] == streams.SEEDING
        assert unit.identities[0]["seeding"] == streams.SEEDING
        assert "defaults" not in unit.identities[0]["components"]["objective"]
    iwae = units[1]
    assert iwae.components["objective"]["options"] == {"k": 5}


def test_objective_options_change_the_key_and_show_in_the_label(host) -> None:  # type: ignore[no-untyped-def]
    base = plan(request(objectives=["iwae"], priors=["standard-normal"]), host)[0]
    more = plan(
        request(
            objectives=["iwae"],
            priors=["standard-normal"],
            component_options={"objective": {"k": 50}},
        ),
        host,
    )[0]
    assert base.keys != more.keys
    assert more.label.endswith("/ iwae(k=50)")
    assert more.components["objective"]["options"] == {"k": 50}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"prior": {"componets": 50}},
            "no prior of this run .* has an option 'componets'; did you mean 'components'",
        ),
        ({"objective": {"kk": 5}}, "no objective of this run .* option 'kk'; did you mean 'k'"),
        ({"posterior": {"k": 1}}, "options are given per part"),
    ],
)
def test_unknown_option_keys_are_errors_with_a_suggestion(host, options, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        plan(request(objectives=["iwae"], component_options=options), host)


def test_an_option_known_to_one_prior_of_the_grid_goes_to_that_prior_only(host) -> None:  # type: ignore[no-untyped-def]
    units = plan(request(component_options={"prior": {"components": 3}}), host)
    by_prior = {u.combination["prior"]: u.components["prior"]["options"] for u in units}
    assert by_prior["mog"] == {"components": 3}
    assert "components" not in by_prior["vamp"]


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ([0, 0, 1], "seed 0 is given more than once"),
        ([-1], r"seed -1 must be a whole number in \[0, 2\*\*63\)"),
        ([2**63], r"must be a whole number in \[0, 2\*\*63\)"),
        ([], "no seeds to run"),
    ],
)
def test_bad_seeds_are_refused_before_training(host, seeds, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        plan(request(seeds=seeds), host)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lr": math.inf}, "lr must be a finite number > 0"),
        ({"k": 10**6}, "more than 100,000"),
        ({"latent_dim": 10**5}, "latent size must be in 1..4096"),
        ({"suite_options": {"limit": "abc"}}, "option limit must be int, got 'abc'"),
        ({"suite_options": {"limt": 3}}, "has no option 'limt'; did you mean 'limit'"),
        ({"executor": "process", "executor_options": {"timeout": "abc"}}, "timeout"),
    ],
)
def test_bad_run_settings_are_one_line_errors(host, changes, message) -> None:  # type: ignore[no-untyped-def]
    from vaebench.runner import run

    with pytest.raises(ConfigError, match=message):
        run(request(**changes), host)


def test_a_profile_carries_sizes_grid_options_and_optimiser_and_flags_override_it(host) -> None:  # type: ignore[no-untyped-def]
    suite = host.get("suite", "digits")
    setup = Profile(
        Budget(steps=7, batch_size=10, lr=2e-3, adam_eps=1e-4, lr_schedule=((1, 1.0), (2, 0.5))),
        EvalSettings(k=3, k_ood=2),
        latent_dim=5,
        hidden_dim=24,
        grid=Grid(priors=("standard-normal", "mog"), objectives=("elbo", "iwae")),
        options={
            "mog": {"components": 4},
            "iwae": ({"k": 2}, {"k": 3}),
            "elbo": {"warmup_steps": 3},
        },
    )
    profiles = {**suite.profiles, "setup": setup}
    host.registry("suite")._entries["digits"] = dataclasses.replace(
        host.entry("suite", "digits"), obj=dataclasses.replace(suite, profiles=profiles)
    )
    units = plan(request(profile="setup"), host)
    assert labels(units) == [
        "mlp-gaussian / mlp-categorical / standard-normal / elbo(warmup_steps=3)",
        "mlp-gaussian / mlp-categorical / mog(components=4) / elbo(warmup_steps=3)",
        "mlp-gaussian / mlp-categorical / standard-normal / iwae(k=2)",
        "mlp-gaussian / mlp-categorical / standard-normal / iwae(k=3)",
    ]
    unit = units[0]
    assert (unit.latent_dim, unit.hidden_dim) == (5, 24)
    assert unit.budget.adam_eps == 1e-4 and unit.budget.lr_schedule == ((1, 1.0), (2, 0.5))
    assert unit.identities[0]["budget"]["adam_eps"] == 1e-4
    assert unit.identities[0]["hidden_dim"] == 24
    flags = plan(
        request(profile="setup", latent_dim=3, lr=1e-2, priors=["vamp"], objectives=["beta"]),
        host,
    )
    assert labels(flags) == ["mlp-gaussian / mlp-categorical / vamp / beta"]
    assert flags[0].latent_dim == 3 and flags[0].budget.lr == 1e-2
    assert flags[0].budget.adam_eps == 1e-4  # what the flags do not name stays the profile's


def test_the_lr_schedule_multiplies_the_rate_per_segment_of_epochs() -> None:
    budget = Budget(steps=100, lr=1.0, lr_schedule=((1, 1.0), (3, 0.1), (2, 0.01)))
    per_epoch = 10
    rates = [budget.lr_at(step, per_epoch) for step in (0, 9, 10, 39, 40, 59, 60, 500)]
    assert rates == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01]
    with pytest.raises(ConfigError, match="lr_schedule must be"):
        Budget(lr_schedule=((0, 1.0),))


def test_the_literature_profiles_fix_the_papers_set_ups(host) -> None:  # type: ignore[no-untyped-def]
    mnist = host.get("suite", "mnist")
    tomczak = mnist.profile("tomczak2018")
    assert (tomczak.latent_dim, tomczak.hidden_dim) == (40, 300)
    assert tomczak.budget.lr == 5e-4 and tomczak.budget.batch_size == 100
    assert tomczak.budget.epochs == 2000 and tomczak.budget.patience == 50
    assert tomczak.budget.eval_every == 50_000 // 100  # validation once an epoch
    assert tomczak.eval.k == 5000
    assert tomczak.options["vamp"]["pseudo_inputs"] == 500
    assert tomczak.options["elbo"] == {"warmup_epochs": 100}
    assert tomczak.options["mlp-gaussian"]["logvar_bounds"] == [-6.0, 2.0]
    burda = mnist.profile("burda2015")
    assert burda.budget.epochs == 3280 and burda.budget.batch_size == 20
    assert burda.budget.adam_eps == 1e-4
    schedule = burda.budget.lr_schedule
    assert [e for e, _ in schedule] == [3**i for i in range(8)]
    assert all(math.isclose(m, 10 ** (-i / 7)) for i, (_, m) in enumerate(schedule))
    assert (burda.latent_dim, burda.hidden_dim) == (50, 200)
    assert burda.options["iwae"] == ({"k": 5}, {"k": 50})


@pytest.mark.slow
def test_run_prints_its_plan_and_a_busy_run_exits_with_its_own_status(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "vaebench.cli", "run", *["--suite", "digits", "--budget", "tiny"]]
    args = [*cli, "--seeds", "0", "--priors", "standard-normal", "--out", str(tmp_path)]
    env = {**os.environ, "VAEBENCH_PLUGINS": "none", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*args, "--option", "limit=100", "--metrics", "likelihood", "-k", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "plan: suite digits, profile tiny, grid ofat: 1 combination(s) x 1 seed(s) (0)" in (
        done.stderr
    )
    assert "mlp-gaussian / mlp-categorical / standard-normal / elbo" in done.stderr


@pytest.mark.slow
def test_a_run_whose_keys_another_run_holds_exits_3_not_0(tmp_path: Path) -> None:
    """A script doing `vaebench run && vaebench compare` must not gate results another run is
    still computing."""
    from vaebench import plugins, results

    with plugins.use_host(plugins.PluginHost(entry_points=False)) as host:
        units = plan(request(seeds=[0], priors=["standard-normal"], out=str(tmp_path)), host)
    root = results.prepare_dir(tmp_path)
    cli = [sys.executable, "-m", "vaebench.cli", "run", *["--suite", "digits", "--budget", "tiny"]]
    args = [*cli, "--seeds", "0", "--priors", "standard-normal", "--out", str(tmp_path)]
    env = {**os.environ, "VAEBENCH_PLUGINS": "none", "OMP_NUM_THREADS": "1"}
    with results.key_locks(root, units[0].stems) as held:
        assert held == set(units[0].stems)
        busy = subprocess.run(
            [*args, "--no-progress"], capture_output=True, text=True, env=env, timeout=600
        )
    assert busy.returncode == 3, busy.stderr
    assert "left to another run" in busy.stderr and "incomplete" in busy.stderr
    assert not list((tmp_path / "records").glob("*.json"))


@pytest.mark.slow
def test_a_dry_run_prints_the_plan_with_each_seeds_state_and_trains_nothing(
    tmp_path: Path,
) -> None:
    import torch

    from vaebench import plugins, results
    from vaebench.runner import run

    small = {"priors": ["standard-normal"], "out": str(tmp_path), "metrics": ["likelihood"]}
    small.update(k=2, suite_options={"limit": 100})
    with plugins.use_host(plugins.PluginHost(entry_points=False)) as host:
        run(request(seeds=[0], **small), host)  # seed 0 finished
        (unit,) = plan(request(seeds=[0, 1, 2], **small), host)
    root = Path(tmp_path)
    assert results.finished_keys(root) == {unit.keys[0]: "ok"}
    # seed 1 mid-way through training, seed 2 never started
    torch.save({"kind": "single", "step": 12}, results.checkpoint_path(root, unit.stems[1]))
    before = sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*"))
    cli = [sys.executable, "-m", "vaebench.cli", "run", *["--suite", "digits", "--budget", "tiny"]]
    args = [*cli, "--seeds", "0", "1", "2", "--priors", "standard-normal", "--out", str(root)]
    args += ["--option", "limit=100", "--metrics", "likelihood", "-k", "2"]
    env = {**os.environ, "VAEBENCH_PLUGINS": "none", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*args, "--dry-run", "--no-progress"], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "3 seed(s) (0, 1, 2)" in done.stderr
    assert "ms/step measured" in done.stderr  # a dry run measures a step even without progress
    assert "seed 0 finished; seed 1 resumes at step 12\n" in done.stderr
    assert "nothing trained" in done.stderr and done.stdout == ""
    assert sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*")) == before


def test_a_component_out_of_default_grids_runs_only_when_named() -> None:
    from vaebench.components.mlp import build_categorical_decoder
    from vaebench.contracts import ComponentSpec
    from vaebench.hookspecs import hookimpl
    from vaebench.plugins import PluginHost

    class Slow:
        @hookimpl
        def vaebench_register_decoders(self, register) -> None:  # type: ignore[no-untyped-def]
            for name, default in (("toy-cheap", True), ("toy-slow", False)):
                register(
                    ComponentSpec(name, "decoder", build_categorical_decoder, default_grid=default)
                )

    host = PluginHost(extra_plugins={"slow": Slow()}, entry_points=False)
    suite = host.get("suite", "digits")
    open_grid = dataclasses.replace(suite.grid, plugins=None)  # every installed part that fits
    host.registry("suite")._entries["digits"] = dataclasses.replace(
        host.entry("suite", "digits"), obj=dataclasses.replace(suite, grid=open_grid)
    )
    decoders = {u.combination["decoder"] for u in plan(request(), host)}
    assert "toy-cheap" in decoders and "toy-slow" not in decoders
    named = plan(request(decoders=["toy-slow"]), host)
    assert {u.combination["decoder"] for u in named} == {"toy-slow"}


def test_vaebench_list_says_which_components_stay_out_of_default_grids() -> None:
    from vaebench.commands.list import _describe
    from vaebench.contracts import ComponentSpec

    def factory(ctx):  # type: ignore[no-untyped-def]
        raise AssertionError("not built")

    assert "not in default grids" in _describe(
        ComponentSpec("x", "decoder", factory, "slow", default_grid=False)
    )
    assert "not in default grids" not in _describe(ComponentSpec("y", "decoder", factory, "fast"))


def test_the_plan_estimates_only_what_is_left_to_train(host) -> None:  # type: ignore[no-untyped-def]
    from vaebench.commands.run import describe_plan
    from vaebench.pipeline import Estimate
    from vaebench.runner import SeedState

    req = request(seeds=[0, 1, 2], priors=["standard-normal"], seed_batch=1)
    units = plan(req, host)
    assert [u.seeds for u in units] == [(0,), (1,), (2,)]
    steps = units[0].budget.total_steps(1000)  # tiny: 20 steps
    per_unit = Estimate(
        step_seconds=50.0 / steps, train_seconds=50.0, eval_seconds=30.0, steps_per_seed=steps
    )
    estimates = dict.fromkeys(range(3), per_unit)
    states = {
        units[0].stems[0]: SeedState("finished"),
        units[1].stems[0]: SeedState("resumes", steps // 2),
        units[2].stems[0]: SeedState("new"),
    }
    text = describe_plan(req, units, estimates, states)
    # finished: nothing; half-way: 25 s of training and the evaluation; new: 50 s and 30 s
    assert "training up to 75 s" in text and "evaluation about 60 s" in text
    assert "estimate: about 2 min in all for what is left" in text
    assert "seed 0 finished; seed 1 resumes at step 10; seed 2 new" not in text  # new: unsaid
    assert "seed 0 finished; seed 1 resumes at step 10" in text
