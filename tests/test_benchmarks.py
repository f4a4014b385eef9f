"""The benchmark scripts run end to end on the real MNIST files with tiny sizes (their numbers
are measured by hand, never asserted here)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str, data: Path) -> str:
    env = {**os.environ, "VAEBENCH_DATA": str(data), "VAEBENCH_PLUGINS": "none"}
    env["OMP_NUM_THREADS"] = "2"
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=env,
    ).stdout


@pytest.mark.slow
def test_profile_benchmark_times_every_literature_combination_per_thread_count(
    real_data_dir: Path,
) -> None:
    out = bench(
        "bench_profiles.py", "--quick", "--profiles", "tomczak2018", "--threads", "1", "2",
        data=real_data_dir,
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith("tomczak2018")]
    assert sorted((r[1], r[6]) for r in rows) == [  # threads, prior
        ("1", "standard-normal"), ("1", "vamp"), ("2", "standard-normal"), ("2", "vamp"),
    ]  # fmt: skip


@pytest.mark.slow
def test_prior_density_benchmark_compares_both_forms(real_data_dir: Path) -> None:
    out = bench("bench_prior_density.py", "--quick", data=real_data_dir)
    for what in ("density, 1024 rows", "evaluation, per 1024 rows", "training step, batch 100"):
        assert out.count(what) == 2, out
    errors = [float(line.split("|")[-2]) for line in out.splitlines() if "density, 1024" in line]
    assert max(errors) < 1e-3  # both forms agree with the float64 reference


@pytest.mark.slow
def test_reproduction_table_names_rows_by_what_varies_and_reads_unfinished_checkpoints(
    real_data_dir: Path, tmp_path: Path
) -> None:
    import csv

    import torch

    from vaebench import plugins, results
    from vaebench.runner import RunRequest, plan

    request = RunRequest(suite="mnist", profile="burda2015", seeds=[0], out=str(tmp_path))
    request = dataclasses.replace(request, data_dir=str(real_data_dir))  # keys do not hold it
    with plugins.use_host(plugins.PluginHost(entry_points=False)) as host:
        units = plan(request, host)
    k50 = next(u for u in units if u.label.endswith("iwae(k=50)"))
    k5 = next(u for u in units if u.label.endswith("/ iwae"))  # k = 5, its default
    root = results.prepare_dir(tmp_path)
    curve = [{"step": 2500 * e, "train_loss": 90.0, "val_neg_elbo": 95.0 - e, "seconds": 9.0 * e}
             for e in (1, 2, 3)]  # fmt: skip
    state = {"best_val": 92.0, "best_step": 7500, "bad": 0, "curve": curve}
    # k = 50's run began while checkpoint_every was part of the key: its checkpoint is under
    # the former stem, and still its row's.
    former = k50.former_stem(0)
    assert former is not None
    torch.save(
        {"kind": "single", "states": [state], "step": 7500, "elapsed": 5400.0},
        results.checkpoint_path(root, former),
    )
    torch.save(
        {"kind": "single", "states": [{**state, "bad": 2}], "step": 12500, "elapsed": 3600.0},
        results.checkpoint_path(root, k5.stems[0]),
    )
    out = bench(
        "reproduction_table.py", str(root), "--profile", "burda2015",
        "--paper", "elbo=86.76", "iwae(k=50)=84.78", "--curves", str(tmp_path / "curves"),
        data=real_data_dir,
    )  # fmt: skip
    assert (
        "| standard-normal / iwae(k=50) | 84.78 | training: best validation -ELBO 92.00 "
        "| 3 (best 3) | 1.5 h | not finished (0 epochs without improvement) |"
    ) in out
    assert (
        "| standard-normal / iwae | - | training: best validation -ELBO 92.00 "
        "| 5 (best 3) | 1.0 h | not finished (2 epochs without improvement) |"
    ) in out
    with open(tmp_path / "curves" / f"{former}.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "epoch", "train_loss", "val_neg_elbo", "seconds"]
    assert [float(r[1]) for r in rows[1:]] == [1.0, 2.0, 3.0]  # 2,500 steps of 20 an epoch

    # Suite options plan other keys, and name the rows.
    static = dataclasses.replace(request, suite_options={"binarization": "static"})
    with plugins.use_host(plugins.PluginHost(entry_points=False)) as host:
        (elbo,) = [u for u in plan(static, host) if u.label.endswith("/ elbo")]
    assert elbo.stems[0] not in (u.stems[0] for u in units)
    torch.save(
        {"kind": "single", "states": [state], "step": 7500, "elapsed": 1800.0},
        results.checkpoint_path(root, elbo.stems[0]),
    )
    out = bench(
        "reproduction_table.py", str(root), "--profile", "burda2015", "--option",
        "binarization=static", "--paper", "elbo=86.76", data=real_data_dir,
    )  # fmt: skip
    assert (
        "| standard-normal / elbo, binarization=static | 86.76 | training: best validation "
        "-ELBO 92.00 | 3 (best 3) | 0.5 h |"
    ) in out
    assert "iwae" not in out  # the rows of the other keys are not this plan's


@pytest.mark.slow
def test_evaluate_checkpoint_gives_what_the_run_would_record_for_the_best_state(
    real_data_dir: Path, tmp_path: Path
) -> None:
    import dataclasses as dc

    import torch

    from vaebench import plugins, results
    from vaebench.evaluate import evaluate
    from vaebench.pipeline import build_unit_model, load_suite_data
    from vaebench.runner import RunRequest, plan

    request = RunRequest(suite="mnist", profile="tomczak2018", seeds=[0], out=str(tmp_path))
    request = dc.replace(request, data_dir=str(real_data_dir))
    with plugins.use_host(plugins.PluginHost(entry_points=False)) as host:
        unit = next(u for u in plan(request, host) if u.combination["prior"] == "standard-normal")
        data = load_suite_data(host.get("suite", "mnist"), {**unit.suite_options,
                               "data_dir": str(real_data_dir)}, host)  # fmt: skip
        torch.manual_seed(3)
        model = build_unit_model(host, unit, data.spec)
        best = {k: v.clone() for k, v in model.state_dict().items()}
        expected, _ = evaluate(
            model, data, dc.replace(unit.eval, k=3), [host.get("metric", "likelihood")],
            torch.device("cpu"), unit.latent_dim,
        )  # fmt: skip
    root = results.prepare_dir(tmp_path)
    state = {"best_state": best, "best_step": 1000, "best_val": 500.0, "bad": 4, "curve": []}
    torch.save(
        {"kind": "single", "states": [state], "step": 3000, "elapsed": 60.0},
        results.checkpoint_path(root, unit.stems[0]),
    )
    out = bench(
        "evaluate_checkpoint.py", str(root), "--row", "standard-normal", "-k", "3",
        data=real_data_dir,
    )  # fmt: skip
    iw = expected["iw_nll"]
    assert "best state: epoch 2 of 6 trained (validation -ELBO 500.00)" in out
    assert f"test IW-NLL (K = 3): {iw.value:.2f} ± {iw.stderr:.2f} nats" in out


@pytest.mark.slow
def test_gpu_session_script_runs_its_benchmarks_and_rows_and_packs_each_results_dir(
    real_data_dir: Path, tmp_path: Path
) -> None:
    """The prepared GPU command, on the CPU with smoke sizes and one tiny row: every output it
    promises is there, and the packed results directory unpacks to the row's record."""
    import tarfile

    work, out = tmp_path / "gpu", tmp_path / "out"
    work.mkdir()
    (work / "rows").write_text(
        "digits --suite digits --budget tiny --priors standard-normal --seeds 0\n"
    )
    env = {**os.environ, "VAEBENCH_DATA": str(real_data_dir), "OMP_NUM_THREADS": "2"}
    env.update(DEVICE="cpu", QUICK="1", GPU_DIR=str(work), OUT=str(out))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # its python3
    script = ROOT / "benchmarks" / "gpu_session.sh"
    subprocess.run(["bash", str(script), "400"], env=env, check=True, timeout=600)
    assert "ended with status" not in (out / "bench_gpu.txt").read_text()
    assert "tomczak2018" in (out / "bench_profiles.txt").read_text()
    log = (out / "rows.log").read_text()
    assert "== digits: exit status 0" in log and "seed 0 finished" in log, log
    parts = sorted(out.glob("digits.tgz.part-*"))
    assert parts
    packed = tmp_path / "digits.tgz"
    packed.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(packed) as tar:
        names = tar.getnames()
    assert any(n.startswith("digits/") and n.endswith(".json") for n in names), names
