"""Bad input of every class ends in one line naming the key, file or variable, exit code 2, no traceback, and
loses nothing already computed: user strings never reach a shell, params are parsed with limits, checkpoints
are checked to be what the DAG says they are, image trees and I/O errors name the file."""
import shlex
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from kdlib.config import DatasetSpec, load_params
from kdlib.config.load import MAX_BYTES
from kdlib.data.sources import imagefolder, read_rgb
from kdlib.engine.checkpoint import inference_model, load_model, save_model
from kdlib.errors import KDError
from kdlib.models.build import build_model
from kdlib.pipeline import stages
from tests.conftest import DVC, SNAKEMAKE, TINY, make_workspace, run

NASTY = ["p$(touch pwned).yaml", "p`touch pwned`.yaml", "p;touch pwned.yaml", "my params.yaml", "p'q\".yaml",
         "p\ntouch pwned.yaml", "-p.yaml", "p{params}.yaml"]


# --- user strings never reach a shell unquoted -----------------------------------------------------------------
@pytest.mark.parametrize("path", NASTY)
def test_every_stage_command_passes_the_params_path_as_one_argument(path):
    for stage in stages(str(TINY))[:6]:
        words = shlex.split(stage.cmd(path))
        assert words[-2:] == ["--params", path] and words[:2] == ["python", stage.script], stage.cmd(path)


def test_injection_through_either_tool_creates_nothing(tmp_path):
    ws = make_workspace(tmp_path)
    for path in ("p$(touch pwned_snake).yaml", "p`touch pwned_dvc`.yaml"):
        profile = "nasty" if "dvc" in path else "tiny"  # DVC's its own: dvc.yaml (params.yaml) runs tiny already
        (ws / path).write_text(TINY.read_text().replace("profile: tiny", f"profile: {profile}"))
    run([SNAKEMAKE, "--cores", "1", "prepare_digits", "--config", "params=p$(touch pwned_snake).yaml"], ws)
    run([sys.executable, "-m", "kdlib.pipeline", "dvc", "--params", "p`touch pwned_dvc`.yaml"], ws)
    run([DVC, "repro", "--quiet", "pipelines/nasty/dvc.yaml:prepare_digits"], ws)  # the profile's own pipeline
    assert not list(ws.glob("pwned*")) and (ws / "data/tiny/digits/train.pt").is_file()
    assert (ws / "data/nasty/digits/train.pt").is_file()
    claimed = run([sys.executable, "-m", "kdlib.pipeline", "dvc", "--params", "p$(touch pwned_snake).yaml"], ws, check=False)
    assert claimed.returncode == 2 and claimed.stderr == (
        "error: p$(touch pwned_snake).yaml: profile 'tiny' is run by dvc.yaml already, and two pipelines cannot write "
        "the same folders (results/tiny/); give this file another profile name, or delete the other pipeline file\n")
    out = run([SNAKEMAKE, "-n", "--config", "params=123"], ws, check=False)
    assert out.returncode != 0 and "123: no such params file" in out.stderr and "Traceback" not in out.stderr


# --- params parsed with limits --------------------------------------------------------------------------------
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{b}'] * 10)}]\n" for b, c in zip("abcdefgh", "bcdefghi"))
FILES = [
    ("bomb", lambda text: BOMB + text, "line 5: with its aliases expanded this value holds more than 100,000 values"),
    ("self alias", lambda text: "x: &a [1, *a]\n" + text, "line 1: an alias refers to a value that contains it"),
    ("deep", lambda text: "x: " + "[" * 3000 + "]" * 3000 + "\n" + text, "values nested too deeply"),
    ("huge", lambda text: text + "#" * MAX_BYTES, "bytes; a params file is at most 1,000,000"),
    ("yes key", lambda text: text.replace("  gen3:", "  yes:", 1), "the key 'yes' reads as bool True in YAML; quote it"),
    ("number key", lambda text: text.replace("  gen3:", "  3:", 1), "the key '3' reads as int 3 in YAML"),
    ("duplicate profile", lambda text: "profile: a\n" + text,
     f"duplicate key 'profile' at line {TINY.read_text().splitlines().index('profile: tiny') + 2}: YAML would keep only"),
    ("not yaml", lambda text: text + "\n  : [\n", "not valid YAML"),
    ("list", lambda text: "- a\n- b\n", "the top level must be a mapping of keys"),
]


@pytest.mark.parametrize("edit,message", [(e, m) for _, e, m in FILES], ids=[n for n, _, _ in FILES])
def test_params_files_are_parsed_with_limits(tmp_path, edit, message):
    path = tmp_path / "params.yaml"
    path.write_text(edit(TINY.read_text()))
    with pytest.raises(KDError) as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_params_file_in_another_encoding_is_named(tmp_path, encoding):
    path = tmp_path / "params.yaml"
    path.write_bytes(("# café\n" + TINY.read_text()).encode(encoding))
    with pytest.raises(KDError, match=r"params.yaml: not UTF-8 text \(byte \d+\); save it as UTF-8"):
        load_params(path)


def test_anchors_within_the_limit_are_welcome(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(TINY.read_text())
    assert load_params(path).runs["s3_at"].model == "cifar_quick"  # the tiny profile merges anchors itself


@pytest.mark.parametrize("args,message", [
    ({"channels": "eight"}, "dense.sr_tiny.student.args.channels: expected a whole number from 1 to 4096 (got 'eight')"),
    ({"blocks": 10**6}, "dense.sr_tiny.student.args.blocks: expected a whole number from 1 to 4096 (got 1000000)"),
    ({"channels": True}, "dense.sr_tiny.student.args.channels: expected a whole number from 1 to 4096 (got True)"),
])
def test_sr_network_arguments_are_checked_before_any_job(tmp_path, args, message):
    raw = yaml.safe_load(TINY.read_text())
    raw["dense"]["sr_tiny"]["student"]["args"].update(args)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(KDError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stages(str(path))


# --- checkpoints are what the DAG says they are ---------------------------------------------------------------
@pytest.fixture
def run_folder(tmp_path, monkeypatch):
    """The tiny profile's teacher (ACB, fused) and student as checkpoints, in a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(TINY.read_text())
    params = load_params("params.yaml")
    for name, deployed in (("teacher", False), ("teacher", True), ("student", False)):
        run = params.runs[name]
        model = build_model(run.model, 10, run.width, "base" if deployed else run.block_type, deployed)
        save_model(tmp_path / f"results/tiny/runs/{name}/{'deploy' if deployed else 'model'}.pt", name, run, model, 10,
                   deployed)
    return params


def test_checked_checkpoints_load(run_folder):
    assert inference_model(run_folder, "teacher", 10) is not None and inference_model(run_folder, "student", 10)


def test_a_teacher_trained_with_other_params_is_refused(run_folder, tmp_path):
    raw = yaml.safe_load(TINY.read_text())
    raw["runs"]["teacher"]["epochs"] = 5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(KDError, match=r"results/tiny/runs/teacher/deploy.pt: was trained with other params than run "
                                      r"'teacher' has now \(runs.teacher.epochs\); rerun `python stages/train.py "
                                      r"teacher` then `python stages/fuse.py teacher`"):
        inference_model(load_params("params.yaml"), "teacher", 10)


def test_an_unfused_checkpoint_in_place_of_deploy_pt_is_refused(run_folder, tmp_path):
    folder = tmp_path / "results/tiny/runs/teacher"
    (folder / "deploy.pt").write_bytes((folder / "model.pt").read_bytes())
    with pytest.raises(KDError, match="deploy.pt: holds the unfused \\(trained\\) form, but the fused one is expected"):
        inference_model(run_folder, "teacher", 10)


def test_another_runs_checkpoint_is_refused(run_folder, tmp_path):
    folder = tmp_path / "results/tiny/runs"
    (folder / "student/model.pt").write_bytes((folder / "teacher/deploy.pt").read_bytes())
    with pytest.raises(KDError, match="student/model.pt: holds a 'cifar_quick' model, but 'lenet5bn' is expected"):
        inference_model(run_folder, "student", 10)


def test_the_params_file_is_named_in_the_command_to_rerun(run_folder, tmp_path):
    (tmp_path / "params.yaml").rename(tmp_path / "my profile.yaml")
    path = tmp_path / "results/tiny/runs/student/model.pt"
    torch.save({**torch.load(path, weights_only=True), "run": "gen3"}, path)
    with pytest.raises(KDError, match=r"model.pt: is the checkpoint of run 'gen3', not of 'student'; rerun "
                                      r"`python stages/train.py student --params 'my profile.yaml'`"):
        inference_model(load_params("my profile.yaml"), "student", 10)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_weights_are_reported_naming_the_file(run_folder, tmp_path, value):
    path = tmp_path / "results/tiny/runs/teacher/deploy.pt"
    blob = torch.load(path, weights_only=True)
    key = next(k for k, v in blob["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    blob["state_dict"][key].view(-1)[0] = value
    torch.save(blob, path)
    with pytest.raises(KDError, match=f"{path}: holds NaN or infinite weights \\({key}\\); the run that wrote it "
                                      "diverged"):
        load_model(path)


@pytest.mark.parametrize("field,value", [("width", "0.5"), ("num_classes", 10.0), ("model", 3), ("deployed", "no"),
                                         ("width", True)])
def test_malformed_checkpoint_fields_are_named(run_folder, tmp_path, field, value):
    path = tmp_path / "results/tiny/runs/student/model.pt"
    torch.save({**torch.load(path, weights_only=True), field: value}, path)
    with pytest.raises(KDError, match=f"{path}: incomplete kdlib checkpoint \\(missing or malformed: {field}\\)"):
        load_model(path)


# --- image trees: every unreadable file named -------------------------------------------------------------------
def image_tree(root, extra=None):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / split / label / f"{i}.png")
    if extra:
        extra(root)
    return DatasetSpec(source="imagefolder", path=str(root), image_size=8)


def truncated(root):
    data = (root / "train/cat/0.png").read_bytes()
    (root / "train/cat/0.png").write_bytes(data[:len(data) // 2])


BAD_TREES = [
    ("empty class", lambda root: (root / "train/bird").mkdir(), "train: Found no valid file for the classes bird"),
    ("truncated", truncated, "train/cat/0.png: not a readable image"),
    ("zero bytes", lambda root: (root / "train/cat/0.png").write_bytes(b""), "train/cat/0.png: not a readable image"),
    ("text as png", lambda root: (root / "val/dog/1.png").write_text("hello"), "val/dog/1.png: not a readable image"),
    ("no classes", lambda root: [p.unlink() for p in (root / "val").rglob("*.png")] and None,
     "val: Found no valid file for the classes cat, dog"),
]


@pytest.mark.parametrize("extra,message", [(e, m) for _, e, m in BAD_TREES], ids=[n for n, _, _ in BAD_TREES])
def test_bad_image_trees_name_the_file(tmp_path, extra, message):
    spec = image_tree(tmp_path / "tree", extra)
    with pytest.raises(KDError, match=message.replace(".", r"\.")):
        imagefolder(spec)


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    assert np.asarray(read_rgb(path))[..., 0].tolist() == [[0, 100], [200, 255]]


# --- stage processes: one line, exit 2, the file or variable named ---------------------------------------------
@pytest.fixture(scope="module")
def prepared_ws(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("bad"))
    run([sys.executable, "stages/prepare.py", "digits"], ws)
    return ws


def stage(ws, *args, env=None):
    out = run([sys.executable, *args], ws, check=False, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    return out.stderr.strip()


@pytest.mark.parametrize("device,message", [
    ("tpu9", "KDLIB_DEVICE='tpu9': not a device (e.g. cpu, cuda, cuda:1)"),
    ("cuda:7", "KDLIB_DEVICE='cuda:7': this machine has 0 CUDA device(s)"),
    ("meta", "KDLIB_DEVICE='meta': kdlib runs on cpu or cuda"),
])
def test_a_bad_device_is_named(prepared_ws, device, message):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    assert stage(prepared_ws, "stages/train.py", "student", env={"KDLIB_DEVICE": device}) == f"error: {message}"


def test_an_unwritable_run_folder_is_named(prepared_ws):
    blocker = prepared_ws / "results/tiny/runs/student"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the run's folder belongs")
    try:
        message = stage(prepared_ws, "stages/train.py", "student")
    finally:
        blocker.unlink()
    assert message.startswith("error: results/tiny/runs/student") and ("exists" in message or "directory" in message)


# --- nothing already computed is lost ---------------------------------------------------------------------------
def test_dvc_repro_after_a_typo_keeps_the_results(finished):
    folder = finished / "results/tiny/runs/student"
    kept = {name: (folder / name).read_bytes() for name in ("model.pt", "metrics.json", "history.csv")}
    params = finished / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("  student:\n    model: lenet5bn\n", "  student:\n    model: lenet5bn\n    epoch: 3\n"))
    try:
        out = run([DVC, "repro", "train_student"], finished, check=False)
    finally:
        params.write_text(original)
    assert out.returncode != 0 and "runs.student.epoch: unknown key (did you mean 'epochs'?)" in out.stdout + out.stderr
    assert {name: (folder / name).read_bytes() for name in kept} == kept
    assert "Data and pipelines are up to date" in run([DVC, "status"], finished).stdout


def test_a_failing_fuse_or_export_keeps_the_last_good_files(finished, monkeypatch, tmp_path):
    import kdlib.export.export_run as export_run
    import kdlib.reparam.deploy as deploy
    monkeypatch.chdir(finished)
    params = load_params("params.yaml")
    folder = finished / "results/tiny/runs/teacher"
    kept = {name: (folder / name).read_bytes() for name in ("deploy.pt", "fuse.json", "eval.json", "model.onnx", "export.json")}

    def no_memory(*args, **kwargs):
        raise KDError("a latency batch too large to allocate")
    monkeypatch.setattr(deploy, "latency_ms", no_memory)
    monkeypatch.setattr(export_run, "latencies", no_memory)
    with pytest.raises(KDError):
        deploy.fuse_run("teacher", params, torch.device("cpu"))
    with pytest.raises(KDError):
        export_run.export_run("teacher", params)
    assert {name: (folder / name).read_bytes() for name in kept} == kept
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # no scratch left behind


def test_a_truncated_cifar_archive_is_named_as_such(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.utils as utils
    from kdlib.data.sources import cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(utils, "download_url", offline)
    spec = DatasetSpec(source="cifar10", path=str(tmp_path))
    with pytest.raises(KDError, match=r"cifar10: could not download or read it \(<urlopen error no network>\)"):
        cifar(spec)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b" + b"\0" * 100)  # the start of a gzip file
    with pytest.raises(KDError, match=r"cifar-10-python.tar.gz: not the complete cifar10 archive \(its MD5 differs"):
        cifar(spec)
