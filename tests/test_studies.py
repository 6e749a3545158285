"""The tables stage's studies: one list names every output, and the stage writes exactly those files."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from kdlib.config import SRExperiment, load_params
from kdlib.report.studies import ENTRY, STUDIES, applicable, dense_report_files, report_outputs
from kdlib.report.tables import write_report
from tests.conftest import REPO
from tests.test_report import known  # noqa: F401  (the fixture: the tiny profile's runs with made-up results)

PROFILES = ["params.yaml", *(str(p.relative_to(REPO)) for p in sorted((REPO / "configs").glob("*.yaml")))]


@pytest.mark.parametrize("profile", PROFILES)
def test_report_outputs_are_the_applicable_studies_outputs_each_once(profile):
    params = load_params(REPO / profile)
    outputs = report_outputs(params)
    assert outputs == [str(p) for s in STUDIES if s.applies(params) for p in s.outputs(params).values()]
    assert len(outputs) == len(set(outputs))
    root = f"results/{params.profile}"  # the profile's own folder
    assert f"{root}/report.md" in outputs and all(p.startswith((f"{root}/tables/", f"{root}/figures/"))
                                                  for p in outputs if p != f"{root}/report.md")
    assert {s.name for s in applicable(params)} >= {"overview", "efficiency", "accuracy", "seed000"}
    for name in params.dense:
        assert {str(f) for f in dense_report_files(params, name)} <= set(outputs)


def test_no_two_studies_write_the_same_file_and_each_has_the_entry_point():
    params = load_params(REPO / "configs/tiny.yaml")  # every study applies
    assert applicable(params) == list(STUDIES)
    assert len({s.name for s in STUDIES}) == len(STUDIES)
    for study in STUDIES:
        assert callable(getattr(importlib.import_module(study.module), ENTRY))


def test_the_studies_list_is_light():
    code = ("import sys, kdlib.report.studies; "
            "print(sorted({'torch', 'pandas', 'matplotlib', 'tabulate'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _fake_inputs(params, root: Path) -> None:
    """What the tables stage reads besides the `known` results: the datasets' meta.json and test.pt (the prediction
    figure shows test images), every run's top-3 predictions, the fusion check of the ACB runs, and the dense
    experiments' data and results."""
    g = torch.Generator().manual_seed(0)
    for ds in {r.dataset for r in params.runs.values()}:
        folder = root / params.layout.dataset_dir(ds)
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"description": ds, "classes": [str(i) for i in range(10)],
                                                      "num_train": 100, "num_test": 8, "image_size": 16}))
        for split in ("train.pt", "test.pt"):
            torch.save({"images": torch.randint(0, 255, (8, 3, 16, 16), generator=g, dtype=torch.uint8),
                        "labels": torch.arange(8)}, folder / split)
    for name in params.runs:
        path = root / "results/tiny/runs" / name / "eval.json"
        top3 = [{"index": i, "label": i, "classes": [(i + k) % 10 for k in range(3)], "probs": [0.6, 0.3, 0.1]}
                for i in range(8)]
        (path.parent / "samples.json").write_text(json.dumps({"checkpoint": "model.pt", "top3": top3}))
        fuse = root / "results/tiny/runs" / name / "fuse.json"
        if fuse.is_file():  # what seed 000's table 2 prints
            acc = json.loads(path.read_text())["test_acc"]
            fuse.write_text(json.dumps(json.loads(fuse.read_text()) | {
                "max_abs_logit_diff": 1e-6, "fused_test_acc": acc, "unfused_test_acc": acc,
                "latency_ms_per_batch": {"batch_size": 64, "device": "cpu", "threads": 2, "unfused": 2.0, "fused": 1.0,
                                         "plain": 1.1}}))
    for name, exp in params.dense.items():
        sr = isinstance(exp, SRExperiment)
        folder = root / "data/tiny/dense" / name
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"description": name, "num_test": 2}))
        s = exp.data.scale if sr else 1
        test = ({"lr": [torch.randint(0, 255, (3, 12, 12), generator=g, dtype=torch.uint8)],
                 "hr": [torch.randint(0, 255, (3, 12 * s, 12 * s), generator=g, dtype=torch.uint8)], "names": ["x"]}
                if sr else {"images": torch.randint(0, 255, (2, 3, 32, 32), generator=g, dtype=torch.uint8),
                            "edges": (torch.rand(2, 32, 32, generator=g) > 0.8).float()})
        torch.save(test, folder / "test.pt")
        for i, role in enumerate(("teacher", "scratch", "kd")):
            run = root / "results/tiny/dense" / name / role
            run.mkdir(parents=True, exist_ok=True)  # the students' export.json is there already (`known`)
            final = {"psnr_y": 25.0 + i, "ssim_y": 0.8, "psnr_rgb": 24.0} if sr else {"ods_f": 0.5 + i / 10}
            (run / "metrics.json").write_text(json.dumps({"params": 12345, "final": final}))
            epochs = range(1, exp.net(role).epochs + 1)
            pd.DataFrame({"epoch": list(epochs), "dice": [0.1 * k for k in epochs]}).to_csv(run / "history.csv",
                                                                                            index=False)
            outputs = ([torch.randint(0, 255, tuple(test["hr"][0].shape), generator=g, dtype=torch.uint8)] if sr
                       else torch.randint(0, 255, (2, 32, 32), generator=g, dtype=torch.uint8))
            torch.save({"outputs": outputs, "perceptual": "vgg"}, run / "predictions.pt")


def _written(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for sub in ("results/tiny/tables", "results/tiny/figures") if (root / sub).is_dir()
            for p in (root / sub).rglob("*") if p.is_file()} | \
        ({"results/tiny/report.md"} if (root / "results/tiny/report.md").is_file() else set())


@pytest.mark.parametrize("studies", ["all", "core"])
def test_tables_stage_writes_exactly_report_outputs(known, tmp_path, studies):  # noqa: F811
    params, _ = known
    if studies == "core":  # no seed 001-003 roles, no dense experiments
        params = params.model_copy(update={"report": params.report.model_copy(
            update={"seed001": None, "seed002": None, "seed003": None}), "dense": {}})
    _fake_inputs(params, tmp_path)
    write_report(params)
    expected = report_outputs(params)
    assert _written(tmp_path) == set(expected)
    report = (tmp_path / "results/tiny/report.md").read_text()
    for path in expected:  # every figure is shown in report.md, and every table printed in it
        if path.endswith(".png"):
            assert f"]({Path(path).relative_to('results/tiny')})" in report, path
        elif path != "results/tiny/report.md":
            assert (tmp_path / path).read_text().rstrip("\n") in report, path
