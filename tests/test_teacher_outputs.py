"""The teacher-output cache: a cached student equals its live-teacher twin, a changed stream is refused, and the DAG
puts the cache between teacher and students in both tools."""
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from kdlib.config import load_params, streams, validate
from kdlib.distill.teacher_outputs import pack_logits, unpack_logits, write
from kdlib.engine.trainer import train
from kdlib.errors import KDError
from kdlib.pipeline import dvc_yaml, stages
from tests.conftest import REPO, TINY, run, to_rerun

LIVE_ONLY = ("train_s", "time_s")  # seconds differ run to run


@contextlib.contextmanager
def inside(ws):
    """In `ws`, on one thread, as a stage runs (kdlib.engine.device.pin_training_threads)."""
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(ws)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def twins(finished, tmp_path_factory):
    """The tiny teacher's students, each trained twice from the finished workspace's data and teacher: replaying its
    cached outputs (float32, the default), and with the live teacher (`<run>_live`); one plain, one with
    Mixup/CutMix and random erasing. Then `kd` once more from float16 outputs, as `kd` of profile tiny16."""
    ws = tmp_path_factory.mktemp("twins")
    raw = yaml.safe_load(TINY.read_text())
    kd = raw["runs"]["student_kd"]
    mixed = {**raw["runs"]["student_kd_v2"], "seed": 0}
    del mixed["seeds"], mixed["teacher_cache"]
    runs = {"teacher": raw["runs"]["teacher"], "kd": kd, "kd_mixed": mixed}
    runs |= {f"{n}_live": {**runs[n], "teacher_cache": False} for n in ("kd", "kd_mixed")}
    params = {"profile": "tiny", "datasets": raw["datasets"], "defaults": raw["defaults"], "runs": runs}
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    half = {**params, "profile": "tiny16", "runs": {n: runs[n] for n in ("teacher", "kd")},
            "teacher_outputs": {"precision": "float16"}}
    (ws / "tiny16.yaml").write_text(yaml.safe_dump(half, sort_keys=False))
    for profile in ("tiny", "tiny16"):
        shutil.copytree(finished / "data/tiny/digits", ws / f"data/{profile}/digits")
        shutil.copytree(finished / "results/tiny/runs/teacher", ws / f"results/{profile}/runs/teacher")
    cpu = torch.device("cpu")
    with inside(ws):
        full, half = load_params("params.yaml"), load_params("tiny16.yaml")
        found = streams(full)
        assert sorted(found.values()) == [["kd"], ["kd_mixed"]]
        for params in (full, half):
            for stream in streams(params):
                write(params, stream, cpu)
        for name in ("kd", "kd_live", "kd_mixed", "kd_mixed_live"):
            train(name, full, cpu)
        train("kd", half, cpu)
    return ws, found


@pytest.mark.parametrize("name", ["kd", "kd_mixed"])
def test_a_student_replaying_float32_teacher_outputs_equals_its_live_twin_bit_for_bit(twins, name):
    ws, _ = twins
    runs = ws / "results/tiny/runs"
    cached, live = (torch.load(runs / n / "model.pt", weights_only=True)["state_dict"] for n in (name, f"{name}_live"))
    assert cached.keys() == live.keys() and all(torch.equal(cached[k], live[k]) for k in cached)
    histories = [pd.read_csv(runs / n / "history.csv").drop(columns=list(LIVE_ONLY)) for n in (name, f"{name}_live")]
    pd.testing.assert_frame_equal(*histories, check_exact=True)
    assert histories[0]["train_kd"].gt(0).all()  # the KD term was there to replay


def test_the_pipeline_s_cached_student_equals_the_live_twin(finished, twins):
    """Through Snakemake (the finished tiny workspace), student_kd replayed its cache: the same numbers."""
    ws, _ = twins
    cached = pd.read_csv(finished / "results/tiny/runs/student_kd/history.csv").drop(columns=list(LIVE_ONLY))
    live = pd.read_csv(ws / "results/tiny/runs/kd_live/history.csv").drop(columns=list(LIVE_ONLY))
    pd.testing.assert_frame_equal(cached, live, check_exact=True)


def test_float16_teacher_outputs_differ_by_their_rounding_amplified_by_training(twins):
    ws, _ = twins
    half = pd.read_csv(ws / "results/tiny16/runs/kd/history.csv")
    live = pd.read_csv(ws / "results/tiny/runs/kd_live/history.csv")
    first = abs(half["train_loss"][0] - live["train_loss"][0]) / live["train_loss"][0]
    assert 0 < first < 1e-2  # measured: 0.34 %; another stream's batches would differ by far more
    assert abs(half["test_acc"].iloc[-1] - live["test_acc"].iloc[-1]) <= 2.0


def test_a_changed_teacher_or_stream_is_refused_and_nothing_is_overwritten(twins):
    ws, found = twins
    stream = next(s for s, readers in found.items() if readers == ["kd"])
    assert stream == "kd"
    folder = Path("data/tiny/teacher_outputs") / stream
    model = ws / "results/tiny/runs/kd/model.pt"
    before = model.read_bytes()
    deploy = ws / "results/tiny/runs/teacher/deploy.pt"
    original = deploy.read_bytes()
    try:  # the teacher retrained, its outputs not recomputed: one line from the stage, exit code 2
        state = torch.load(deploy, weights_only=True)
        first = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
        state["state_dict"][first] += 0.01
        torch.save(state, deploy)
        out = run([sys.executable, str(REPO / "stages/train.py"), "kd"], ws, check=False, env={"PYTHONPATH": str(REPO)})
        assert out.returncode == 2 and out.stderr.count("\n") == 1
        assert out.stderr == (f"error: {folder}: computed for another stream, teacher or dataset than run kd has now; "
                              f"rerun `python stages/teacher_outputs.py {stream}` (or the DAG) first\n")
    finally:
        deploy.write_bytes(original)
    params, cpu = load_params(ws / "params.yaml"), torch.device("cpu")
    sums = ws / folder / "batches.npy"
    saved = sums.read_bytes()
    try:  # the same recipe, other images (say, augmentation code changed under it)
        checks = np.load(sums)
        checks[0, 0] += 1.0
        np.save(sums, checks)
        with inside(ws), pytest.raises(KDError, match="batch 1 of epoch 1 is not the one the teacher saw"):
            train("kd", params, cpu)
    finally:
        sums.write_bytes(saved)
    (ws / folder / "stream.json").rename(ws / folder / "stream.json.moved")
    try:
        with inside(ws), pytest.raises(KDError, match=r"teacher outputs not found \(stream.json\)"):
            train("kd", params, cpu)
    finally:
        (ws / folder / "stream.json.moved").rename(ws / folder / "stream.json")
    assert model.read_bytes() == before


def test_the_size_is_checked_before_the_teacher_runs(twins):
    ws, found = twins
    raw = yaml.safe_load((ws / "params.yaml").read_text())
    raw["teacher_outputs"] = {"max_mb": 0.01}
    params = validate(raw)
    stream = next(iter(streams(params)))
    # 3 epochs x 1438 images x 10 classes x 4 bytes
    with inside(ws), pytest.raises(KDError, match=r"0.2 MB \(3 epochs x 1438 images x 10 values x 4 bytes\), above "
                                                  r"teacher_outputs.max_mb \(0.01\)"):
        write(params, stream, torch.device("cpu"))


def test_the_cache_applies_to_logit_methods_only(tiny_raw):
    tiny_raw["runs"]["student_kd_feature"]["teacher_cache"] = True
    with pytest.raises(KDError, match="runs.student_kd_feature: teacher_cache: distill.method 'feature' reads more "
                                      "of the teacher than its logits"):
        validate(tiny_raw)
    tiny_raw["runs"]["student_kd_feature"]["teacher_cache"] = None
    tiny_raw["runs"]["student"]["teacher_cache"] = True
    with pytest.raises(KDError, match="runs.student: 'teacher_cache: true' needs a 'teacher'"):
        validate(tiny_raw)


def _cache_stages(raw, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    listed = {s.name: s for s in stages(str(path))}
    return listed, dvc_yaml(str(path))[1]["stages"]


def test_students_read_the_cache_and_a_sweep_shares_it(tiny_raw, tmp_path):
    listed, dvc = _cache_stages(tiny_raw, tmp_path)
    caches = {n: s for n, s in listed.items() if s.kind == "teacher_outputs"}
    # Each named after its first reader in alphabetical order.
    assert set(caches) == {"teacher_outputs_s3_dkd", "teacher_outputs_gen3"}  # student_kd_v2, s3_kd_half: live
    shared = caches["teacher_outputs_s3_dkd"]
    # student_kd, s3_kd and s3_dkd (other models, methods and schedules, one stream) read it, not the teacher.
    for student in ("student_kd", "s3_kd", "s3_dkd"):
        assert set(shared.outs) <= set(listed[f"train_{student}"].deps) <= set(dvc[f"train_{student}"]["deps"])
        assert "results/tiny/runs/teacher/deploy.pt" not in dvc[f"train_{student}"]["deps"]
    assert set(dvc["teacher_outputs_s3_dkd"]["deps"]) >= {"results/tiny/runs/teacher/deploy.pt",
                                                              "data/tiny/digits/train.pt"}
    assert "results/tiny/runs/teacher/deploy.pt" in dvc["train_student_kd_feature"]["deps"]  # feature KD: live
    # A temperature and alpha sweep keeps every cache's recipe but gen3's (its teacher, student_kd, changed).
    tiny_raw["runs"]["student_kd"]["distill"] = {"method": "logits", "alpha": 0.5, "temperature": 8.0}
    swept, _ = _cache_stages(tiny_raw, tmp_path)
    assert {n for n, s in swept.items() if s.kind == "teacher_outputs"} == set(caches)
    assert {n for n in caches if swept[n].values != caches[n].values} == {"teacher_outputs_gen3"}
    # An augmentation edit takes student_kd off the shared stream, to a cache of its own.
    tiny_raw["runs"]["student_kd"]["augment"] = {"crop_padding": 1, "hflip": False}
    moved, _ = _cache_stages(tiny_raw, tmp_path)
    assert {n for n, s in moved.items() if s.kind == "teacher_outputs"} - set(caches) == {"teacher_outputs_student_kd"}
    assert set(moved["teacher_outputs_student_kd"].outs) <= set(moved["train_student_kd"].deps)
    assert moved["teacher_outputs_s3_dkd"].values == shared.values


def test_both_tools_rerun_the_cache_for_a_storage_edit_and_only_the_student_for_a_temperature_edit(finished):
    params = finished / "params.yaml"
    original = params.read_text()
    caches = {f"teacher_outputs_{s}": readers for s, readers in streams(load_params(params)).items()}
    try:
        raw = yaml.safe_load(original)
        # Its cache is student_kd's and s3_dkd's too. (A new mapping: YAML merge keys share s3_kd's with s3_kd_half.)
        raw["runs"]["s3_kd"]["distill"] = {**raw["runs"]["s3_kd"]["distill"], "temperature": 2.0}
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        snake, dvc = to_rerun(finished)
        assert snake == {"train_s3_kd", "export_s3_kd", "tables"} and dvc == {"train_s3_kd", "tables"}
        raw = yaml.safe_load(original)
        raw["teacher_outputs"] = {"precision": "float16"}
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        snake, dvc = to_rerun(finished)
        readers = {r for rs in caches.values() for r in rs}
        assert snake == set(caches) | {f"{stage}_{r}" for r in readers for stage in ("train", "export")} | {"tables"}
        assert dvc == set(caches)  # DVC names the readers once the caches are rewritten
    finally:
        params.write_text(original)
    assert json.loads((finished / "data/tiny/teacher_outputs/s3_dkd/stream.json").read_text())["dtype"] == "float32"


@pytest.mark.parametrize("classes,k", [(7, 3), (10, 3), (10, 1)])
def test_top_k_rows_keep_the_k_logits_and_the_rest_s_probability(classes, k):
    """Even where a row's 2k + 1 values are as many as the classes (7 and 3), the replay reads them as top-k."""
    logits = torch.randn(5, classes, generator=torch.Generator().manual_seed(classes)) * 3
    back = unpack_logits(pack_logits(logits, k, np.dtype("float32")), classes, k)
    p, q = logits.softmax(1), back.softmax(1)
    top = logits.topk(k, dim=1).indices
    assert torch.allclose(q.gather(1, top), p.gather(1, top), atol=1e-6)  # exact at T = 1 for the k kept
    rest = torch.ones_like(p).scatter(1, top, 0).bool()
    assert torch.allclose(q[rest].view(5, -1), (p[rest].view(5, -1).sum(1, keepdim=True) / (classes - k))
                          .expand(-1, classes - k), atol=1e-6)  # the rest's mass, spread evenly
    assert torch.equal(unpack_logits(pack_logits(logits, None, np.dtype("float32")), classes, None), logits)
